//! The `cohortdb` catalog as DataFusion sees it: schema `public` with the
//! built-in relations and user tables, plus registered schemas (`pg_catalog`).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use chrono_tz::Tz;
use cohortdb_storage::Store;
use datafusion::catalog::{CatalogProvider, SchemaProvider};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result as DfResult;

use crate::error::SqlError;
use crate::tables::contacts::ContactsTable;
use crate::tables::events::EventsTable;
use crate::tables::identities::IdentitiesTable;
use crate::tables::meta::{MetaKind, MetaTable};
use crate::tables::user::UserTable;

/// Names of the built-in relations in `public`.
pub const BUILTIN_RELATIONS: &[&str] = &[
    "contacts",
    "contact_view",
    "events",
    "event_view",
    "event_types",
    "event_properties",
    "identities",
    "groups",
    "tags",
    "tag_history",
    "collector_apps",
    "audit_log",
    "wechat_accounts",
    "wechat_sends",
    "wechat_send_recipients",
    "wechat_qrcodes",
    "journeys",
    "journey_runs",
    "journey_step_stats",
];

/// Shared state the providers need.
#[derive(Debug, Clone)]
pub struct TableEnv {
    /// The store.
    pub store: Arc<Store>,
    /// Server time zone (defines `event_day`).
    pub tz: Tz,
    /// Serialises read-modify-write of contact rows.
    pub contact_lock: Arc<tokio::sync::Mutex<()>>,
    /// Session time zone name carried by TIMESTAMPTZ columns.
    pub session_tz: Arc<str>,
    /// Whether this session's scans mask masked columns.
    pub mask: crate::runtime::context::MaskFlag,
}

/// Catalog provider for the single database.
#[derive(Debug)]
pub struct CohortCatalog {
    public: Arc<CohortSchema>,
    others: RwLock<HashMap<String, Arc<dyn SchemaProvider>>>,
}

impl CohortCatalog {
    /// The catalog over `env`.
    pub fn new(env: TableEnv) -> Self {
        CohortCatalog {
            public: Arc::new(CohortSchema { env }),
            others: RwLock::new(HashMap::new()),
        }
    }
}

impl CatalogProvider for CohortCatalog {
    fn schema_names(&self) -> Vec<String> {
        let mut v = vec!["public".to_string()];
        v.extend(self.others.read().expect("lock").keys().cloned());
        v
    }
    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if name == "public" {
            return Some(self.public.clone());
        }
        self.others.read().expect("lock").get(name).cloned()
    }
    fn register_schema(
        &self,
        name: &str,
        schema: Arc<dyn SchemaProvider>,
    ) -> DfResult<Option<Arc<dyn SchemaProvider>>> {
        Ok(self
            .others
            .write()
            .expect("lock")
            .insert(name.to_string(), schema))
    }
}

/// Schema `public`.
#[derive(Debug)]
pub struct CohortSchema {
    env: TableEnv,
}

impl CohortSchema {
    fn provider(&self, name: &str) -> Option<Arc<dyn TableProvider>> {
        let e = &self.env;
        Some(match name {
            "contacts" => Arc::new(ContactsTable::new(e, false)),
            "contact_view" => Arc::new(ContactsTable::new(e, true)),
            "events" => Arc::new(EventsTable::new(e, false)),
            "event_view" => Arc::new(EventsTable::new(e, true)),
            "event_types" => Arc::new(MetaTable::new(e.store.clone(), MetaKind::EventTypes)),
            "event_properties" => {
                Arc::new(MetaTable::new(e.store.clone(), MetaKind::EventProperties))
            }
            "identities" => Arc::new(IdentitiesTable::new(e.store.clone(), e.session_tz.clone())),
            "wechat_accounts" | "wechat_sends" | "wechat_send_recipients" | "wechat_qrcodes" => {
                use crate::tables::wechat::{WechatTable, WechatTableProvider};
                let t = match name {
                    "wechat_accounts" => WechatTable::Accounts,
                    "wechat_sends" => WechatTable::Sends,
                    "wechat_qrcodes" => WechatTable::Qrcodes,
                    _ => WechatTable::Recipients,
                };
                Arc::new(crate::tables::RowsTable(WechatTableProvider::new(
                    e.store.clone(),
                    t,
                    e.session_tz.clone(),
                )))
            }
            "journeys" | "journey_runs" | "journey_step_stats" => {
                use crate::tables::journeys::{JourneyTable, JourneyTableProvider};
                let t = match name {
                    "journeys" => JourneyTable::Journeys,
                    "journey_runs" => JourneyTable::Runs,
                    _ => JourneyTable::Stats,
                };
                Arc::new(crate::tables::RowsTable(JourneyTableProvider::new(
                    e.store.clone(),
                    t,
                    e.session_tz.clone(),
                )))
            }
            "audit_log" => Arc::new(crate::tables::audit::AuditLogTable::new(
                e.store.clone(),
                e.session_tz.clone(),
            )),
            "collector_apps" => Arc::new(crate::tables::collector::CollectorAppsTable::new(
                e.store.clone(),
                e.session_tz.clone(),
            )),
            "groups" | "tags" | "tag_history" => {
                use crate::tables::groups::{GroupsKind, GroupsTable};
                let kind = match name {
                    "groups" => GroupsKind::Groups,
                    "tags" => GroupsKind::Tags,
                    _ => GroupsKind::TagHistory,
                };
                Arc::new(GroupsTable::new(
                    e.store.clone(),
                    kind,
                    e.session_tz.clone(),
                ))
            }
            other => {
                let catalog = e.store.catalog();
                if let Some(v) = catalog.view(other) {
                    return crate::tables::view::ViewTable::new(v.clone())
                        .ok()
                        .map(|t| Arc::new(t) as Arc<dyn TableProvider>);
                }
                let def = catalog.table(other)?.clone();
                Arc::new(UserTable::new(e.store.clone(), def, &e.session_tz))
            }
        })
    }
}

#[async_trait::async_trait]
impl SchemaProvider for CohortSchema {
    fn table_names(&self) -> Vec<String> {
        let mut v: Vec<String> = BUILTIN_RELATIONS.iter().map(|s| s.to_string()).collect();
        let catalog = self.env.store.catalog();
        v.extend(catalog.data().tables.iter().map(|t| t.name.clone()));
        v.extend(catalog.data().views.iter().map(|t| t.name.clone()));
        v
    }
    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        Ok(self.provider(name))
    }
    async fn table_type(&self, name: &str) -> DfResult<Option<TableType>> {
        Ok(match name {
            "contact_view" | "event_view" => Some(TableType::View),
            n if BUILTIN_RELATIONS.contains(&n) => Some(TableType::Base),
            n => {
                let catalog = self.env.store.catalog();
                if catalog.view(n).is_some() {
                    Some(TableType::View)
                } else {
                    catalog.table(n).map(|_| TableType::Base)
                }
            }
        })
    }
    fn table_exist(&self, name: &str) -> bool {
        let catalog = self.env.store.catalog();
        BUILTIN_RELATIONS.contains(&name)
            || catalog.table(name).is_some()
            || catalog.view(name).is_some()
    }
    fn register_table(
        &self,
        name: String,
        _table: Arc<dyn TableProvider>,
    ) -> DfResult<Option<Arc<dyn TableProvider>>> {
        Err(SqlError::Unsupported(format!(
            "cannot create \"{name}\" here: use CREATE TABLE with column definitions (views and CREATE TABLE AS are not supported)"
        ))
        .into())
    }
}
