//! Building audit rows (SPEC §8 `audit_log`): who did what to which
//! object. `detail` carries ids, counts and column names, never values or
//! passwords. Rows go into the batch of the change where the handler owns
//! that batch (users, roles, masking); after the commit otherwise (see
//! docs/security.md).

use cohortdb_storage::audit::AuditRow;

use crate::model::rows::now_ms;

/// An audit row stamped now.
pub fn row(user: &str, action: &str, object_type: &str, object_id: &str, detail: &str) -> AuditRow {
    AuditRow {
        ts: now_ms(),
        user_name: user.to_string(),
        action: action.to_string(),
        object_type: object_type.to_string(),
        object_id: object_id.to_string(),
        detail: detail.to_string(),
    }
}
