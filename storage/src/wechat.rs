//! The WeChat outbox (`wechat` column family): sends and their recipients.
//!
//! Keys: `'S' | send_id: u64` → [`SendRecord`] (JSON);
//! `'R' | send_id: u64 | contact_id: u64` → [`RecipientRecord`] (JSON);
//! `'C' | client_send_id (UTF-8)` → send_id: u64 (the send a client's
//! idempotency key created); `'Q' | event seq: u64` → handled at (ms, i64):
//! a QR-code scan event whose reply and group add are done.
//! A recipient moves `pending → sending → sent | failed`, or is `skipped`
//! when created; `sending` is committed (WAL synced) before the API call,
//! so a crash mid-call leaves it `sending`, which the sender turns into
//! `unknown` at start and never retries, except recipients of a mass call,
//! whose `clientmsgid` makes the retry safe.

use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::keys::cf;
use crate::store::{cfh, Batch, Store};

/// One send (`wechat_sends` row without its counts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendRecord {
    /// Id.
    pub send_id: u64,
    /// Account (channel) id.
    pub account_id: String,
    /// `mass`, `template`, `custom` or `subscribe`.
    pub kind: String,
    /// Message type of mass and custom sends (`text`, `image`, `mpnews`, `news`, …).
    pub msg_type: Option<String>,
    /// Template id of template and subscribe sends.
    pub template_id: Option<String>,
    /// The content (mass/custom) or template data (template/subscribe).
    pub content: serde_json::Value,
    /// Template link.
    pub url: Option<String>,
    /// `all` or a group id.
    pub audience: String,
    /// `pending`, `done` or `cancelled`.
    pub status: String,
    /// Created (ms).
    pub created_at: i64,
    /// Not sent before (ms), for scheduled mass sends.
    pub scheduled_at: Option<i64>,
    /// Finished or cancelled (ms).
    pub finished_at: Option<i64>,
    /// Who created it.
    pub created_by: String,
    /// The client's idempotency key (`client_send_id => '…'`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_send_id: Option<String>,
    /// Recipients, sent, failed and skipped, kept when the send finished
    /// with none in flight (its recipients no longer change), so reading
    /// `wechat_sends` does not scan a finished send's outbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_counts: Option<[u64; 4]>,
}

/// One recipient of a send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecipientRecord {
    /// The fan's openid on the account (empty when it has none).
    pub openid: String,
    /// `pending`, `sending`, `sent`, `failed`, `skipped` or `unknown`.
    pub status: String,
    /// Why skipped or failed (`not_follower`, `errcode 43004`, …).
    pub reason: Option<String>,
    /// Last change (ms).
    pub updated_at: i64,
    /// API calls tried (transient failures retried).
    #[serde(default)]
    pub attempts: u32,
    /// Not retried before (ms).
    #[serde(default)]
    pub not_before: i64,
    /// The `clientmsgid` of the mass call that carried this recipient: a
    /// retry of that call (after a crash, a lost answer or a transient
    /// error) sends the same recipients with the same id, which WeChat
    /// answers `45065` instead of sending again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clientmsgid: Option<String>,
}

/// A send's recipients by status: `[recipients, sent, failed, skipped]`,
/// and whether some are `sending` (their call is in flight).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RecipientCounts {
    /// Recipients, sent, failed, skipped.
    pub counts: [u64; 4],
    /// Some recipient is `sending`.
    pub in_flight: bool,
}

impl RecipientCounts {
    /// Counts `r`.
    pub fn add(&mut self, r: &RecipientRecord) {
        self.counts[0] += 1;
        match r.status.as_str() {
            "sent" => self.counts[1] += 1,
            "failed" => self.counts[2] += 1,
            "skipped" => self.counts[3] += 1,
            "sending" => self.in_flight = true,
            _ => {}
        }
    }
}

fn send_key(id: u64) -> [u8; 9] {
    let mut k = [b'S'; 9];
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

fn recipient_key(send: u64, contact: u64) -> [u8; 17] {
    let mut k = [b'R'; 17];
    k[1..9].copy_from_slice(&send.to_be_bytes());
    k[9..].copy_from_slice(&contact.to_be_bytes());
    k
}

fn client_send_key(id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + id.len());
    k.push(b'C');
    k.extend_from_slice(id.as_bytes());
    k
}

fn qr_event_key(seq: u64) -> [u8; 9] {
    let mut k = [b'Q'; 9];
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// The highest send id stored (0 when none).
pub(crate) fn last_send_id(db: &rocksdb::DB) -> Result<u64> {
    let mut it = db.raw_iterator_cf(cfh(db, cf::WECHAT));
    it.seek_for_prev(send_key(u64::MAX));
    let id = match it.key() {
        Some(k) if k.len() == 9 && k[0] == b'S' => {
            u64::from_be_bytes(k[1..].try_into().expect("8 bytes"))
        }
        _ => 0,
    };
    it.status()?;
    Ok(id)
}

impl Store {
    /// A new send id.
    pub fn alloc_send_id(&self) -> u64 {
        self.wechat_send
            .get_or_init(|| {
                std::sync::atomic::AtomicU64::new(last_send_id(&self.db).unwrap_or_else(|e| {
                    tracing::error!("reading the last send id failed: {e}");
                    0
                }))
            })
            .fetch_add(1, Ordering::SeqCst)
            + 1
    }

    /// One send.
    pub fn get_send(&self, id: u64) -> Result<Option<SendRecord>> {
        match self.db.get_cf(self.cf(cf::WECHAT), send_key(id))? {
            Some(v) => Ok(Some(serde_json::from_slice(&v)?)),
            None => Ok(None),
        }
    }

    /// The send created with client idempotency key `id`.
    pub fn send_by_client_id(&self, id: &str) -> Result<Option<u64>> {
        Ok(self
            .db
            .get_cf(self.cf(cf::WECHAT), client_send_key(id))?
            .and_then(|v| v.as_slice().try_into().ok().map(u64::from_be_bytes)))
    }

    /// Whether the QR-code actions of event `seq` are done.
    pub fn qr_event_handled(&self, seq: u64) -> Result<bool> {
        Ok(self
            .db
            .get_cf(self.cf(cf::WECHAT), qr_event_key(seq))?
            .is_some())
    }

    /// Every send, oldest first.
    pub fn scan_sends(&self) -> Result<Vec<SendRecord>> {
        let mut out = Vec::new();
        let mut it = self.db.raw_iterator_cf(self.cf(cf::WECHAT));
        it.seek([b'S']);
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            if k.first() != Some(&b'S') {
                break;
            }
            out.push(serde_json::from_slice(v)?);
            it.next();
        }
        it.status()?;
        Ok(out)
    }

    /// The recipients of send `id` by status.
    pub fn recipient_counts(&self, id: u64) -> Result<RecipientCounts> {
        let mut c = RecipientCounts::default();
        self.scan_recipients(id, &mut |_, r| {
            c.add(&r);
            true
        })?;
        Ok(c)
    }

    /// Visits the recipients of send `id` in contact order; stop by returning false.
    pub fn scan_recipients(
        &self,
        id: u64,
        f: &mut dyn FnMut(u64, RecipientRecord) -> bool,
    ) -> Result<()> {
        self.scan_recipients_from(id, 0, f)
    }

    /// [`Store::scan_recipients`] from contact `from` on.
    pub fn scan_recipients_from(
        &self,
        id: u64,
        from: u64,
        f: &mut dyn FnMut(u64, RecipientRecord) -> bool,
    ) -> Result<()> {
        let mut it = self.db.raw_iterator_cf(self.cf(cf::WECHAT));
        let start = recipient_key(id, from);
        it.seek(start);
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            if k.len() != 17 || k[..9] != start[..9] {
                break;
            }
            let contact = u64::from_be_bytes(k[9..].try_into().expect("8 bytes"));
            let r: RecipientRecord = serde_json::from_slice(v)?;
            if !f(contact, r) {
                break;
            }
            it.next();
        }
        it.status()?;
        Ok(())
    }
}

impl Batch {
    /// Writes a send.
    pub fn put_send(&mut self, s: &SendRecord) {
        self.wb.put_cf(
            cfh(&self.db, cf::WECHAT),
            send_key(s.send_id),
            serde_json::to_vec(s).expect("sends serialize"),
        );
    }

    /// Records that client idempotency key `id` created send `send`.
    pub fn put_client_send_id(&mut self, id: &str, send: u64) {
        self.wb.put_cf(
            cfh(&self.db, cf::WECHAT),
            client_send_key(id),
            send.to_be_bytes(),
        );
    }

    /// Marks the QR-code actions of event `seq` done.
    pub fn put_qr_event_handled(&mut self, seq: u64, at_ms: i64) {
        self.wb.put_cf(
            cfh(&self.db, cf::WECHAT),
            qr_event_key(seq),
            at_ms.to_be_bytes(),
        );
    }

    /// Writes a recipient of send `send`.
    pub fn put_recipient(&mut self, send: u64, contact: u64, r: &RecipientRecord) {
        self.wb.put_cf(
            cfh(&self.db, cf::WECHAT),
            recipient_key(send, contact),
            serde_json::to_vec(r).expect("recipients serialize"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    #[tokio::test]
    async fn sends_and_recipients_round_trip_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let mut b = store.batch();
        for _ in 0..2 {
            let id = store.alloc_send_id();
            b.put_send(&SendRecord {
                send_id: id,
                account_id: "wx".into(),
                kind: "mass".into(),
                msg_type: Some("text".into()),
                template_id: None,
                content: serde_json::json!({"content": "hi"}),
                url: None,
                audience: "all".into(),
                status: "pending".into(),
                created_at: 1,
                scheduled_at: None,
                finished_at: None,
                created_by: "admin".into(),
                client_send_id: None,
                final_counts: None,
            });
            for c in [300u64, 2, 70_000] {
                b.put_recipient(
                    id,
                    c,
                    &RecipientRecord {
                        openid: format!("o{c}"),
                        status: "pending".into(),
                        reason: None,
                        updated_at: 1,
                        attempts: 0,
                        not_before: 0,
                        clientmsgid: None,
                    },
                );
            }
        }
        store.commit(b).await.unwrap();
        let sends = store.scan_sends().unwrap();
        assert_eq!(sends.iter().map(|s| s.send_id).collect::<Vec<_>>(), [1, 2]);
        let mut seen = vec![];
        store
            .scan_recipients(1, &mut |c, r| {
                seen.push((c, r.openid));
                true
            })
            .unwrap();
        assert_eq!(
            seen,
            [
                (2, "o2".to_string()),
                (300, "o300".into()),
                (70_000, "o70000".into())
            ]
        );
        assert_eq!(last_send_id(&store.db).unwrap(), 2);
        // client keys sort before the sends and do not disturb their scan
        let mut b = store.batch();
        b.put_client_send_id("retry-1", 2);
        store.commit(b).await.unwrap();
        assert_eq!(store.send_by_client_id("retry-1").unwrap(), Some(2));
        assert_eq!(store.send_by_client_id("retry-2").unwrap(), None);
        assert_eq!(store.scan_sends().unwrap().len(), 2);
        assert_eq!(last_send_id(&store.db).unwrap(), 2);
        // QR markers too
        let mut b = store.batch();
        b.put_qr_event_handled(77, 1);
        store.commit(b).await.unwrap();
        assert!(store.qr_event_handled(77).unwrap());
        assert!(!store.qr_event_handled(78).unwrap());
        assert_eq!(store.scan_sends().unwrap().len(), 2);
    }
}
