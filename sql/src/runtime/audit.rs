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

/// The audit row a running statement still has to write, shared with the
/// commit that makes its change (see [`take_into`]).
pub type Pending = std::sync::Arc<std::sync::Mutex<Option<AuditRow>>>;

tokio::task_local! {
    static PENDING: Pending;
}

/// Runs `f` with `row` pending: the first contact write that commits
/// inside `f` puts the row into its own batch ([`take_into`]). Returns
/// `f`'s output and the row when no commit took it (the caller writes it
/// after the statement, on its own).
pub async fn scope<F: std::future::Future>(row: AuditRow, f: F) -> (F::Output, Option<AuditRow>) {
    let cell: Pending = std::sync::Arc::new(std::sync::Mutex::new(Some(row)));
    let out = PENDING.scope(cell.clone(), f).await;
    let left = cell.lock().expect("pending audit row").take();
    (out, left)
}

/// Puts the pending audit row of the running statement, if any, into
/// `batch` (with `rows=n` as its detail when `rows` is given), so the
/// change and its audit row commit together.
pub fn take_into(
    store: &cohortdb_storage::Store,
    batch: &mut cohortdb_storage::Batch,
    rows: Option<u64>,
) {
    let _ = PENDING.try_with(|cell| {
        if let Some(mut row) = cell.lock().expect("pending audit row").take() {
            if let Some(n) = rows {
                row.detail = format!("rows={n}");
            }
            batch.put_audit(store, &row);
        }
    });
}
