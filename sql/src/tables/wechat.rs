//! The WeChat tables: `wechat_accounts` (never the secret), `wechat_sends`
//! (with live counts from the outbox), `wechat_send_recipients` and
//! `wechat_qrcodes`.

use std::sync::Arc;

use cohortdb_storage::Store;
use datafusion::arrow::array::{
    ArrayRef, Int64Builder, StringBuilder, TimestampMillisecondBuilder,
};
use datafusion::arrow::datatypes::{DataType as A, Field, Schema, SchemaRef};

use crate::model::convert::arrow_type_in;

/// Which WeChat table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WechatTable {
    /// `wechat_accounts`.
    Accounts,
    /// `wechat_sends`.
    Sends,
    /// `wechat_send_recipients`.
    Recipients,
    /// `wechat_qrcodes`.
    Qrcodes,
}

/// A WeChat table provider.
#[derive(Debug)]
pub struct WechatTableProvider {
    store: Arc<Store>,
    table: WechatTable,
    tz: Arc<str>,
}

impl WechatTableProvider {
    /// Provider of `table`; timestamps carry time zone `tz`.
    pub fn new(store: Arc<Store>, table: WechatTable, tz: Arc<str>) -> Self {
        WechatTableProvider { store, table, tz }
    }

    fn ts(&self) -> A {
        arrow_type_in(cohortdb_storage::DataType::Timestamptz, &self.tz)
    }

    fn schema_of(&self) -> SchemaRef {
        let f = |n: &str, t: A, null: bool| Field::new(n, t, null);
        Arc::new(Schema::new(match self.table {
            WechatTable::Accounts => vec![
                f("account_id", A::Utf8, false),
                f("app_id", A::Utf8, false),
                f("kind", A::Utf8, false),
                f("api_base_url", A::Utf8, false),
                f("created_at", self.ts(), false),
            ],
            WechatTable::Sends => vec![
                f("send_id", A::Int64, false),
                f("account_id", A::Utf8, false),
                f("kind", A::Utf8, false),
                f("status", A::Utf8, false),
                f("recipients", A::Int64, false),
                f("sent", A::Int64, false),
                f("failed", A::Int64, false),
                f("skipped", A::Int64, false),
                f("created_at", self.ts(), false),
                f("finished_at", self.ts(), true),
            ],
            WechatTable::Recipients => vec![
                f("send_id", A::Int64, false),
                f("contact_id", A::Int64, false),
                f("openid", A::Utf8, true),
                f("status", A::Utf8, false),
                f("reason", A::Utf8, true),
                f("updated_at", self.ts(), false),
            ],
            WechatTable::Qrcodes => vec![
                f("account_id", A::Utf8, false),
                f("qr_id", A::Utf8, false),
                f("kind", A::Utf8, false),
                f("ticket", A::Utf8, false),
                f("url", A::Utf8, false),
                f("expire_at", self.ts(), true),
                f("options", A::Utf8, false),
                f("created_at", self.ts(), false),
            ],
        }))
    }

    fn rows(&self) -> cohortdb_storage::Result<Vec<ArrayRef>> {
        let tsb = || TimestampMillisecondBuilder::new().with_timezone(self.tz.as_ref());
        Ok(match self.table {
            WechatTable::Accounts => {
                let (mut id, mut app, mut kind, mut url, mut at) = (
                    StringBuilder::new(),
                    StringBuilder::new(),
                    StringBuilder::new(),
                    StringBuilder::new(),
                    tsb(),
                );
                for a in &self.store.catalog().data().wechat_accounts {
                    id.append_value(&a.account_id);
                    app.append_value(&a.app_id);
                    kind.append_value(&a.kind);
                    url.append_value(&a.api_base_url);
                    at.append_value(a.created_at);
                }
                vec![
                    Arc::new(id.finish()),
                    Arc::new(app.finish()),
                    Arc::new(kind.finish()),
                    Arc::new(url.finish()),
                    Arc::new(at.finish()),
                ]
            }
            WechatTable::Sends => {
                let mut id = Int64Builder::new();
                let (mut acct, mut kind, mut status) = (
                    StringBuilder::new(),
                    StringBuilder::new(),
                    StringBuilder::new(),
                );
                let mut counts: [Int64Builder; 4] = Default::default();
                let (mut created, mut finished) = (tsb(), tsb());
                for s in self.store.scan_sends()? {
                    let counts_now = match s.final_counts {
                        Some(counts) => cohortdb_storage::wechat::RecipientCounts {
                            counts,
                            in_flight: false,
                        },
                        None => self.store.recipient_counts(s.send_id)?,
                    };
                    let in_flight = counts_now.in_flight;
                    let c = counts_now.counts.map(|x| x as i64);
                    let shown = if s.status == "cancelled" {
                        "cancelled"
                    } else if s.finished_at.is_some() {
                        "done"
                    } else if in_flight || c[1] + c[2] > 0 {
                        "sending"
                    } else if s
                        .scheduled_at
                        .is_some_and(|t| t > crate::model::rows::now_ms())
                    {
                        "scheduled"
                    } else {
                        "pending"
                    };
                    id.append_value(s.send_id as i64);
                    acct.append_value(&s.account_id);
                    kind.append_value(&s.kind);
                    status.append_value(shown);
                    for (b, v) in counts.iter_mut().zip(c) {
                        b.append_value(v);
                    }
                    created.append_value(s.created_at);
                    finished.append_option(s.finished_at);
                }
                let mut out: Vec<ArrayRef> = vec![
                    Arc::new(id.finish()),
                    Arc::new(acct.finish()),
                    Arc::new(kind.finish()),
                    Arc::new(status.finish()),
                ];
                for mut b in counts {
                    out.push(Arc::new(b.finish()));
                }
                out.push(Arc::new(created.finish()));
                out.push(Arc::new(finished.finish()));
                out
            }
            WechatTable::Recipients => {
                let (mut id, mut contact) = (Int64Builder::new(), Int64Builder::new());
                let (mut openid, mut status, mut reason) = (
                    StringBuilder::new(),
                    StringBuilder::new(),
                    StringBuilder::new(),
                );
                let mut at = tsb();
                for s in self.store.scan_sends()? {
                    self.store.scan_recipients(s.send_id, &mut |c, r| {
                        id.append_value(s.send_id as i64);
                        contact.append_value(c as i64);
                        if r.openid.is_empty() {
                            openid.append_null();
                        } else {
                            openid.append_value(&r.openid);
                        }
                        status.append_value(&r.status);
                        reason.append_option(r.reason.as_deref());
                        at.append_value(r.updated_at);
                        true
                    })?;
                }
                vec![
                    Arc::new(id.finish()),
                    Arc::new(contact.finish()),
                    Arc::new(openid.finish()),
                    Arc::new(status.finish()),
                    Arc::new(reason.finish()),
                    Arc::new(at.finish()),
                ]
            }
            WechatTable::Qrcodes => {
                let mut text: [StringBuilder; 6] = Default::default();
                let (mut expire, mut created) = (tsb(), tsb());
                for q in &self.store.catalog().data().wechat_qrcodes {
                    for (b, v) in text.iter_mut().zip([
                        &q.account_id,
                        &q.qr_id,
                        &q.kind,
                        &q.ticket,
                        &q.url,
                        &q.options.to_string(),
                    ]) {
                        b.append_value(v);
                    }
                    expire.append_option(q.expire_at);
                    created.append_value(q.created_at);
                }
                let [mut acct, mut qr, mut kind, mut ticket, mut url, mut options] = text;
                vec![
                    Arc::new(acct.finish()),
                    Arc::new(qr.finish()),
                    Arc::new(kind.finish()),
                    Arc::new(ticket.finish()),
                    Arc::new(url.finish()),
                    Arc::new(expire.finish()),
                    Arc::new(options.finish()),
                    Arc::new(created.finish()),
                ]
            }
        })
    }
}

impl super::RowSource for WechatTableProvider {
    fn row_schema(&self) -> SchemaRef {
        self.schema_of()
    }
    fn columns(&self) -> cohortdb_storage::Result<Vec<ArrayRef>> {
        self.rows()
    }
}
