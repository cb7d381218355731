//! Catalog entries of groups and tags: their kinds, refresh policies, job
//! states and value types (stored in [`CatalogData`](super::CatalogData)).

use serde::{Deserialize, Serialize};

use super::Catalog;

/// Dynamic (query-defined) or static (edited) group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupKind {
    /// Membership is the result of a query, recomputed by refreshes.
    Dynamic,
    /// Membership is edited with `ALTER GROUP ... ADD|REMOVE CONTACTS`.
    Static,
}

impl GroupKind {
    /// Name shown in `groups.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupKind::Dynamic => "dynamic",
            GroupKind::Static => "static",
        }
    }
}

/// When a definition is recomputed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RefreshPolicy {
    /// Only on `REFRESH GROUP|TAG`.
    Manual,
    /// Every day at 02:00 server time (and on `REFRESH`).
    Daily,
}

impl RefreshPolicy {
    /// Name shown in `groups.refresh`.
    pub fn as_str(self) -> &'static str {
        match self {
            RefreshPolicy::Manual => "manual",
            RefreshPolicy::Daily => "daily",
        }
    }
}

/// State of the last (or running) computation of a group or tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Queued for the scheduler.
    Pending,
    /// The query is running.
    Computing,
    /// The result is complete in memory.
    Computed,
    /// The new version is being written and switched in.
    Materializing,
    /// The current version is complete and visible.
    Done,
    /// The last computation failed (`error` says why); the previous version stands.
    Failed,
}

impl JobStatus {
    /// Name shown in `groups.status`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Computing => "computing",
            JobStatus::Computed => "computed",
            JobStatus::Materializing => "materializing",
            JobStatus::Done => "done",
            JobStatus::Failed => "failed",
        }
    }

    /// True while a job is queued or running.
    pub fn in_progress(self) -> bool {
        !matches!(self, JobStatus::Done | JobStatus::Failed)
    }
}

/// A group definition (catalog entry).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GroupDef {
    /// Internal id (bitmap key).
    pub id: u32,
    /// The group id users write (`group_vip`).
    pub name: String,
    /// `COMMENT '...'`.
    pub comment: Option<String>,
    /// Dynamic or static.
    pub kind: GroupKind,
    /// The defining query of a dynamic group.
    pub definition: Option<String>,
    /// Refresh policy.
    pub refresh: RefreshPolicy,
    /// Status of the last refresh.
    pub status: JobStatus,
    /// Members of the current version (static groups: at the last edit).
    pub members: u64,
    /// When the current version was computed (ms since the epoch).
    pub computed_at_ms: Option<i64>,
    /// Error of the last failed refresh.
    pub error: Option<String>,
    /// The visible bitmap version.
    pub version: u32,
    /// The last version handed out (versions are never reused).
    pub last_version: u32,
}

/// The value type of a tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TagType {
    /// Text.
    Varchar,
    /// 64-bit integer.
    Bigint,
    /// 64-bit float.
    Double,
    /// Boolean.
    Boolean,
    /// Instant (ms).
    Timestamptz,
    /// Array of text (`VARCHAR[]`).
    VarcharArray,
}

impl TagType {
    /// The SQL name (`tags.type`).
    pub fn sql_name(self) -> &'static str {
        match self {
            TagType::Varchar => "VARCHAR",
            TagType::Bigint => "BIGINT",
            TagType::Double => "DOUBLE",
            TagType::Boolean => "BOOLEAN",
            TagType::Timestamptz => "TIMESTAMPTZ",
            TagType::VarcharArray => "VARCHAR[]",
        }
    }

    /// Parses a type as written in `CREATE TAG ... TYPE t`.
    pub fn parse(name: &str) -> Option<TagType> {
        let n = name.trim().to_ascii_uppercase().replace(' ', "");
        Some(match n.as_str() {
            "VARCHAR" | "TEXT" | "STRING" => TagType::Varchar,
            "BIGINT" | "INT8" | "INT" | "INTEGER" => TagType::Bigint,
            "DOUBLE" | "DOUBLEPRECISION" | "FLOAT8" | "FLOAT" => TagType::Double,
            "BOOLEAN" | "BOOL" => TagType::Boolean,
            "TIMESTAMPTZ" | "TIMESTAMP" | "TIMESTAMPWITHTIMEZONE" => TagType::Timestamptz,
            "VARCHAR[]" | "TEXT[]" | "STRING[]" => TagType::VarcharArray,
            _ => return None,
        })
    }
}

/// A tag definition (catalog entry).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TagDef {
    /// Internal id (key prefix of values and history).
    pub id: u32,
    /// The tag id users write (`tag_level`).
    pub name: String,
    /// `COMMENT '...'`.
    pub comment: Option<String>,
    /// Value type.
    pub data_type: TagType,
    /// The defining query (`contact_id, value`) of a SQL tag.
    pub definition: Option<String>,
    /// Identity type of an external tag's rows (`wechat.openid`).
    pub external_id_type: Option<String>,
    /// Refresh policy.
    pub refresh: RefreshPolicy,
    /// Status of the last computation or import.
    pub status: JobStatus,
    /// Contacts with a value in the current version.
    pub members: u64,
    /// When the current version was computed (ms since the epoch).
    pub computed_at_ms: Option<i64>,
    /// Error of the last failed computation.
    pub error: Option<String>,
    /// The visible values version.
    pub version: u32,
    /// The last version handed out.
    pub last_version: u32,
}

impl Catalog {
    /// Group by id (`group_vip`).
    pub fn group(&self, name: &str) -> Option<&GroupDef> {
        self.data().groups.iter().find(|g| g.name == name)
    }

    /// Tag by id (`tag_level`).
    pub fn tag(&self, name: &str) -> Option<&TagDef> {
        self.data().tags.iter().find(|t| t.name == name)
    }
}
