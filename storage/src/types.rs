//! Column data types shared by contacts, event properties and user tables.

use serde::{Deserialize, Serialize};

/// A column type as users write it in DDL and as it is stored in the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataType {
    /// Text (`VARCHAR`, `TEXT`).
    Varchar,
    /// 64-bit integer (`BIGINT`, also accepts `INT`, `INTEGER`).
    Bigint,
    /// 64-bit float (`DOUBLE`, `DOUBLE PRECISION`, `FLOAT8`, `REAL`).
    Double,
    /// Boolean.
    Boolean,
    /// Calendar date.
    Date,
    /// Instant with millisecond precision (`TIMESTAMPTZ`, `TIMESTAMP`).
    Timestamptz,
}

impl DataType {
    /// The SQL name shown in catalogs (`event_properties.data_type`, `\d`).
    pub fn sql_name(self) -> &'static str {
        match self {
            DataType::Varchar => "VARCHAR",
            DataType::Bigint => "BIGINT",
            DataType::Double => "DOUBLE",
            DataType::Boolean => "BOOLEAN",
            DataType::Date => "DATE",
            DataType::Timestamptz => "TIMESTAMPTZ",
        }
    }

    /// Parses a user-written type name; `None` when the type is not supported.
    pub fn parse(name: &str) -> Option<DataType> {
        let n = name.trim().to_ascii_uppercase();
        let base = n.split('(').next().unwrap_or("").trim();
        Some(match base {
            "VARCHAR" | "TEXT" | "STRING" | "CHARACTER VARYING" | "CHAR" | "CHARACTER" => {
                DataType::Varchar
            }
            "BIGINT" | "INT8" | "INT" | "INTEGER" | "INT4" | "SMALLINT" | "INT2" => {
                DataType::Bigint
            }
            "DOUBLE" | "DOUBLE PRECISION" | "FLOAT8" | "FLOAT" | "REAL" | "FLOAT4" | "NUMERIC"
            | "DECIMAL" => DataType::Double,
            "BOOLEAN" | "BOOL" => DataType::Boolean,
            "DATE" => DataType::Date,
            "TIMESTAMPTZ"
            | "TIMESTAMP"
            | "TIMESTAMP WITH TIME ZONE"
            | "TIMESTAMP WITHOUT TIME ZONE" => DataType::Timestamptz,
            _ => return None,
        })
    }
}
