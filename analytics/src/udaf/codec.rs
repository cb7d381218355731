//! Byte encoding of the accumulators' mergeable state (what a partial
//! aggregate sends through a shuffle): little-endian, length-prefixed, a
//! version byte first. Decoding checks every length and fails cleanly on
//! truncated or foreign bytes.
//!
//! Keyed states (FUNNEL, LTV, PATHS) start with a key table: the encoded
//! key tuples (see [`super::keys`]); a key `k ≥ 1` in the state is entry
//! `k − 1`, and an empty table means unkeyed (every key 0).

use std::collections::{BTreeMap, HashMap};

use datafusion::common::{exec_datafusion_err, Result as DfResult};

use crate::attribute::{AttributeAcc, TouchCounts};
use crate::funnel::{FunnelAcc, FunnelGroup};
use crate::ltv::{LtvAcc, LtvCohort};
use crate::paths::PathsAcc;
use crate::retention::{Cohort, RetentionAcc};

const VERSION: u8 = 2;

/// A decoded keyed state: its key table and its counters.
pub type KeyedState<T> = (Vec<Vec<u8>>, T);

struct Writer(Vec<u8>);

impl Writer {
    fn new() -> Self {
        Writer(vec![VERSION])
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn f64(&mut self, v: f64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn len(&mut self, n: usize) {
        self.u32(n as u32);
    }
    fn table(&mut self, table: &[Vec<u8>]) {
        self.len(table.len());
        for k in table {
            self.len(k.len());
            self.0.extend_from_slice(k);
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn new(b: &'a [u8]) -> DfResult<Self> {
        match b.split_first() {
            Some((&VERSION, rest)) => Ok(Reader(rest)),
            _ => Err(exec_datafusion_err!(
                "analytics state: unknown encoding (version byte {:?})",
                b.first()
            )),
        }
    }
    fn take(&mut self, n: usize) -> DfResult<&'a [u8]> {
        if self.0.len() < n {
            return Err(exec_datafusion_err!("analytics state: truncated"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u32(&mut self) -> DfResult<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> DfResult<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn f64(&mut self) -> DfResult<f64> {
        Ok(f64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn len(&mut self, elem: usize) -> DfResult<usize> {
        let n = self.u32()? as usize;
        // a length can't promise more than the bytes left
        if n.saturating_mul(elem.max(1)) > self.0.len() {
            return Err(exec_datafusion_err!("analytics state: truncated"));
        }
        Ok(n)
    }
    fn table(&mut self) -> DfResult<Vec<Vec<u8>>> {
        let n = self.len(4)?;
        let mut t = Vec::with_capacity(n);
        for _ in 0..n {
            let m = self.len(1)?;
            t.push(self.take(m)?.to_vec());
        }
        Ok(t)
    }
    fn end(&self) -> DfResult<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(exec_datafusion_err!("analytics state: trailing bytes"))
        }
    }
}

/// Encodes a FUNNEL accumulator's counters and its key table.
pub fn encode_funnel(acc: &FunnelAcc, table: &[Vec<u8>]) -> Vec<u8> {
    let mut w = Writer::new();
    w.table(table);
    let mut keys: Vec<&u32> = acc.groups.keys().collect();
    keys.sort_unstable();
    w.len(keys.len());
    for k in keys {
        let g = &acc.groups[k];
        w.u32(*k);
        w.len(g.reached.len());
        for r in &g.reached {
            w.u64(*r);
        }
        w.len(g.seconds.len());
        for s in &g.seconds {
            w.len(s.len());
            for x in s {
                w.f64(*x);
            }
        }
    }
    w.0
}

/// Decodes [`encode_funnel`]'s bytes: the key table and the counters.
pub fn decode_funnel(bytes: &[u8]) -> DfResult<KeyedState<HashMap<u32, FunnelGroup>>> {
    let mut r = Reader::new(bytes)?;
    let table = r.table()?;
    let n = r.len(4)?;
    let mut groups = HashMap::with_capacity(n);
    for _ in 0..n {
        let key = r.u32()?;
        let nr = r.len(8)?;
        let reached = (0..nr).map(|_| r.u64()).collect::<DfResult<Vec<_>>>()?;
        let ns = r.len(4)?;
        let mut seconds = Vec::with_capacity(ns);
        for _ in 0..ns {
            let m = r.len(8)?;
            seconds.push((0..m).map(|_| r.f64()).collect::<DfResult<Vec<_>>>()?);
        }
        groups.insert(key, FunnelGroup { reached, seconds });
    }
    r.end()?;
    Ok((table, groups))
}

/// Encodes a RETENTION accumulator's cohorts.
pub fn encode_retention(acc: &RetentionAcc) -> Vec<u8> {
    let mut w = Writer::new();
    w.len(acc.cohorts.len());
    for (c, cohort) in &acc.cohorts {
        w.u32(*c as u32);
        w.u64(cohort.contacts);
        w.len(cohort.counts.len());
        for x in &cohort.counts {
            w.u64(*x);
        }
    }
    w.0
}

/// Decodes [`encode_retention`]'s bytes.
pub fn decode_retention(bytes: &[u8]) -> DfResult<BTreeMap<i32, Cohort>> {
    let mut r = Reader::new(bytes)?;
    let n = r.len(4)?;
    let mut cohorts = BTreeMap::new();
    for _ in 0..n {
        let c = r.u32()? as i32;
        let contacts = r.u64()?;
        let m = r.len(8)?;
        let counts = (0..m).map(|_| r.u64()).collect::<DfResult<Vec<_>>>()?;
        cohorts.insert(c, Cohort { contacts, counts });
    }
    r.end()?;
    Ok(cohorts)
}

/// An ATTRIBUTE accumulator's counters: per touch, then direct.
pub struct AttributeState {
    /// Per touch.
    pub touches: Vec<TouchCounts>,
    /// Direct conversions.
    pub direct_conversions: f64,
    /// Value of direct conversions.
    pub direct_value: f64,
}

/// Encodes an ATTRIBUTE accumulator's counters.
pub fn encode_attribute(acc: &AttributeAcc) -> Vec<u8> {
    let mut w = Writer::new();
    w.len(acc.touches.len());
    for t in &acc.touches {
        w.u64(t.clicks);
        w.u64(t.effective_clicks);
        w.f64(t.conversions);
        w.f64(t.value);
    }
    w.f64(acc.direct_conversions);
    w.f64(acc.direct_value);
    w.0
}

/// Decodes [`encode_attribute`]'s bytes.
pub fn decode_attribute(bytes: &[u8]) -> DfResult<AttributeState> {
    let mut r = Reader::new(bytes)?;
    let n = r.len(32)?;
    let mut touches = Vec::with_capacity(n);
    for _ in 0..n {
        touches.push(TouchCounts {
            clicks: r.u64()?,
            effective_clicks: r.u64()?,
            conversions: r.f64()?,
            value: r.f64()?,
        });
    }
    let state = AttributeState {
        touches,
        direct_conversions: r.f64()?,
        direct_value: r.f64()?,
    };
    r.end()?;
    Ok(state)
}

/// Encodes an LTV accumulator's cohorts and its key table.
pub fn encode_ltv(acc: &LtvAcc, table: &[Vec<u8>]) -> Vec<u8> {
    let mut w = Writer::new();
    w.table(table);
    w.len(acc.cohorts.len());
    for ((key, c), cohort) in &acc.cohorts {
        w.u32(*key);
        w.u32(*c as u32);
        w.u64(cohort.initial_contacts);
        w.u64(cohort.paying_contacts);
        w.len(cohort.revenue.len());
        for x in &cohort.revenue {
            w.f64(*x);
        }
        w.len(cohort.new_payers.len());
        for x in &cohort.new_payers {
            w.u64(*x);
        }
    }
    w.0
}

/// Decodes [`encode_ltv`]'s bytes: the key table and the cohorts.
pub fn decode_ltv(bytes: &[u8]) -> DfResult<KeyedState<BTreeMap<(u32, i32), LtvCohort>>> {
    let mut r = Reader::new(bytes)?;
    let table = r.table()?;
    let n = r.len(8)?;
    let mut cohorts = BTreeMap::new();
    for _ in 0..n {
        let key = r.u32()?;
        let c = r.u32()? as i32;
        let initial_contacts = r.u64()?;
        let paying_contacts = r.u64()?;
        let m = r.len(8)?;
        let revenue = (0..m).map(|_| r.f64()).collect::<DfResult<Vec<_>>>()?;
        let m = r.len(8)?;
        let new_payers = (0..m).map(|_| r.u64()).collect::<DfResult<Vec<_>>>()?;
        cohorts.insert(
            (key, c),
            LtvCohort {
                initial_contacts,
                paying_contacts,
                revenue,
                new_payers,
            },
        );
    }
    r.end()?;
    Ok((table, cohorts))
}

/// Encodes a PATHS accumulator's link counts and its key table (nodes).
pub fn encode_paths(acc: &PathsAcc, table: &[Vec<u8>]) -> Vec<u8> {
    let mut w = Writer::new();
    w.table(table);
    let mut links: Vec<_> = acc.links.iter().collect();
    links.sort_unstable();
    w.len(links.len());
    for (&(level, node, next), &n) in links {
        w.u32(level);
        w.u32(node);
        // next + 1; 0 = the path ends
        w.u32(next.map_or(0, |x| x + 1));
        w.u64(n);
    }
    w.0
}

/// PATHS link counts by (level, node, next).
pub type Links = HashMap<(u32, u32, Option<u32>), u64>;

/// Decodes [`encode_paths`]'s bytes: the key table and the link counts.
pub fn decode_paths(bytes: &[u8]) -> DfResult<KeyedState<Links>> {
    let mut r = Reader::new(bytes)?;
    let table = r.table()?;
    let n = r.len(20)?;
    let mut links = HashMap::with_capacity(n);
    for _ in 0..n {
        let level = r.u32()?;
        let node = r.u32()?;
        let next = r.u32()?.checked_sub(1);
        let count = r.u64()?;
        *links.entry((level, node, next)).or_insert(0) += count;
    }
    r.end()?;
    Ok((table, links))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::funnel::{FunnelSpec, Window};
    use crate::retention::RetentionSpec;
    use crate::Unit;

    #[test]
    fn funnel_state_round_trips_and_rejects_truncation() {
        let mut acc = FunnelAcc::new(FunnelSpec {
            steps: 2,
            window: Window::Hours(1),
            from: 0,
            to: 10,
            strict: false,
        });
        acc.groups.insert(
            7,
            FunnelGroup {
                reached: vec![3, 1],
                seconds: vec![vec![], vec![1.5]],
            },
        );
        let table = vec![b"k".to_vec()];
        let b = encode_funnel(&acc, &table);
        let (t, g) = decode_funnel(&b).unwrap();
        assert_eq!(t, table);
        assert_eq!(g[&7].reached, vec![3, 1]);
        assert_eq!(g[&7].seconds, vec![vec![], vec![1.5]]);
        for cut in 0..b.len() {
            assert!(decode_funnel(&b[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn retention_state_round_trips() {
        let mut acc = RetentionAcc::new(RetentionSpec {
            unit: Unit::Day,
            periods: 1,
            from: 0,
            to: 3,
            churn: false,
            as_of_day: 9,
        });
        acc.cohorts.insert(
            -2,
            Cohort {
                contacts: 4,
                counts: vec![4, 2],
            },
        );
        let b = encode_retention(&acc);
        let c = decode_retention(&b).unwrap();
        assert_eq!(c[&-2].contacts, 4);
        assert_eq!(c[&-2].counts, vec![4, 2]);
        assert!(decode_retention(&b[..b.len() - 1]).is_err());
    }
}
