#!/usr/bin/env python3
"""Peer side of `cohortdb-bench analytics`: the same four analytics questions
(FUNNEL, RETENTION, ATTRIBUTE, LTV) answered by ClickHouse (chdb) and DuckDB
over the same CSV files the benchmark loaded into cohortdb.

Each peer loads both files into native tables (chdb: MergeTree ORDER BY
(contact_id, event_date) in a session with a temporary path; DuckDB: tables in
an in-memory database), then runs each query once as a warm-up and `--runs`
times timed. Only the queries are timed, never the load. Results are
normalised (see `normalise_*`) so that `cohortdb-bench` can compare them with
cohortdb's.

Usage:
    python3 bench/peers/analytics_peers.py --events events.csv \
        --contacts contacts.csv --from 2025-06-01 --to 2025-06-30 --json

With `--json`, stdout is exactly one JSON line; progress goes to stderr. A
peer whose module cannot be imported, or that fails, is reported as
`{"available": false, "error": "..."}`; the script still exits 0.

The statement parameters (event codes, touches, windows, periods) must match
the ones in bench/src/analytics.rs; docs/benchmark.md explains every
difference in semantics between the peers' queries and cohortdb's statements.
"""

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
import traceback

# Columns of the CSV files written by cohortdb-datagen (generator version 1):
# datagen/src/lib.rs CONTACT_COLUMNS/EVENT_COLUMNS with their SQL types.
CONTACT_COLUMNS = [
    ("id", "BIGINT"), ("name", "VARCHAR"), ("nickname", "VARCHAR"),
    ("gender", "VARCHAR"), ("birthday", "DATE"), ("mobile_phone", "VARCHAR"),
    ("email", "VARCHAR"), ("country", "VARCHAR"), ("state", "VARCHAR"),
    ("city", "VARCHAR"), ("created_at", "TIMESTAMPTZ"),
    ("first_seen_at", "TIMESTAMPTZ"), ("utm_source", "VARCHAR"),
    ("utm_medium", "VARCHAR"), ("utm_campaign", "VARCHAR"),
]
EVENT_COLUMNS = [
    ("contact_id", "BIGINT"), ("event", "VARCHAR"), ("event_date", "TIMESTAMPTZ"),
    ("channel_id", "VARCHAR"), ("s_page_path", "VARCHAR"),
    ("s_page_title", "VARCHAR"), ("s_referrer_path", "VARCHAR"),
    ("s_scene", "VARCHAR"), ("s_qrcode_id", "VARCHAR"),
    ("s_search_keyword", "VARCHAR"), ("s_sku_id", "VARCHAR"),
    ("s_sku_name", "VARCHAR"), ("s_sku_price", "DOUBLE"),
    ("s_sku_quantity", "BIGINT"), ("s_order_id", "VARCHAR"),
    ("s_order_status", "VARCHAR"), ("s_menu_key", "VARCHAR"),
    ("s_msg_type", "VARCHAR"), ("s_template_id", "VARCHAR"),
    ("s_duration", "BIGINT"), ("os", "VARCHAR"), ("os_version", "VARCHAR"),
    ("platform", "VARCHAR"), ("app_version", "VARCHAR"), ("sdk_type", "VARCHAR"),
    ("sdk_version", "VARCHAR"), ("screen_width", "BIGINT"),
    ("screen_height", "BIGINT"), ("network_type", "VARCHAR"),
    ("manufacturer", "VARCHAR"), ("device_model", "VARCHAR"), ("ip", "VARCHAR"),
    ("country", "VARCHAR"), ("province", "VARCHAR"), ("city", "VARCHAR"),
    ("utm_source", "VARCHAR"), ("utm_medium", "VARCHAR"),
    ("utm_campaign", "VARCHAR"), ("chan_id", "VARCHAR"),
    ("chan_wxapp_scene", "VARCHAR"), ("guide_id", "VARCHAR"),
    ("room_id", "VARCHAR"), ("chan_shop_id", "VARCHAR"), ("p_amount", "DOUBLE"),
]

# The statements' parameters (same as bench/src/analytics.rs).
FUNNEL_STEPS = ["app_launch", "browse_sku_page", "add_to_cart", "custom_order"]
FUNNEL_WINDOW_DAYS = 7
RETENTION_EVENT = "app_launch"
PERIODS = 7
TARGET_EVENT = "custom_order"
AMOUNT = "p_amount"
TOUCHES = [("search", "search"), ("trigger_sku_component", "sku_component"),
           ("click_menu", "oa_menu")]
ATTRIBUTE_WINDOW_DAYS = 1
LTV_INITIAL = "app_launch"
LTV_REVENUE = "custom_order"

QUERIES = ["funnel", "retention", "attribute", "ltv"]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def day(s):
    return dt.date.fromisoformat(s)


class Range:
    """FROM/TO of the statements as day boundaries (UTC, the session time
    zone of the benchmark's cohortdb)."""

    def __init__(self, first, last):
        self.first = day(first)
        self.last = day(last)
        self.end = self.last + dt.timedelta(days=1)  # exclusive

    def plus(self, d, days):
        return (d + dt.timedelta(days=days)).isoformat()


# ---------------------------------------------------------------- ClickHouse

def ch_type(name, sql_type):
    if name == "contact_id" or name == "id":
        return "Int64"
    if name in ("event", "channel_id"):
        return "LowCardinality(String)"
    if name == "event_date":
        return "DateTime64(3, 'UTC')"
    return {
        "BIGINT": "Nullable(Int64)",
        "VARCHAR": "Nullable(String)",
        "DATE": "Nullable(Date32)",
        "TIMESTAMPTZ": "Nullable(DateTime64(3, 'UTC'))",
        "DOUBLE": "Nullable(Float64)",
    }[sql_type]


def ch_ts(s):
    return f"toDateTime64('{s} 00:00:00', 3, 'UTC')"


def ch_queries(r):
    """ClickHouse SQL of the four questions, keyed like QUERIES."""
    frm, end = ch_ts(r.first.isoformat()), ch_ts(r.end.isoformat())
    s1, s2, s3, s4 = FUNNEL_STEPS
    steps = ", ".join(f"'{s}'" for s in FUNNEL_STEPS)
    # windowFunnel wants an unsigned timestamp: milliseconds since the epoch,
    # so the window is 7 * 86400 * 1000 (elapsed time <= 168 hours after the
    # step-1 event); later steps end at most 7 days after the last range day.
    funnel = f"""
SELECT level, count() AS contacts FROM (
  SELECT contact_id,
         windowFunnel({FUNNEL_WINDOW_DAYS * 86400 * 1000})(
             toUInt64(toUnixTimestamp64Milli(event_date)),
             event = '{s1}' AND event_date < {end},
             event = '{s2}', event = '{s3}', event = '{s4}') AS level
  FROM events
  WHERE event IN ({steps})
    AND event_date >= {frm}
    AND event_date < {ch_ts(r.plus(r.end, FUNNEL_WINDOW_DAYS))}
  GROUP BY contact_id)
WHERE level > 0 GROUP BY level ORDER BY level"""

    conds = ", ".join(
        [f"k = 0 AND cohort >= toDate('{r.first}') AND cohort <= toDate('{r.last}')"]
        + [f"k = {p}" for p in range(PERIODS + 1)])
    retention = f"""
SELECT cohort, {", ".join(f"sum(r[{i + 1}])" for i in range(PERIODS + 2))}
FROM (
  SELECT contact_id, cohort, retention({conds}) AS r
  FROM (
    SELECT contact_id, d - k AS cohort, k
    FROM (SELECT DISTINCT contact_id, toDate(event_date) AS d
          FROM events
          WHERE event = '{RETENTION_EVENT}'
            AND event_date >= {frm}
            AND event_date < {ch_ts(r.plus(r.end, PERIODS))})
    ARRAY JOIN range({PERIODS + 1}) AS k)
  GROUP BY contact_id, cohort)
WHERE r[1] = 1
GROUP BY cohort ORDER BY cohort"""

    touch_events = ", ".join(f"'{e}'" for e, _ in TOUCHES)
    label = "multiIf(" + ", ".join(f"event = '{e}', '{l}'" for e, l in TOUCHES) + ", '')"
    wfrom = ch_ts(r.plus(r.first, -ATTRIBUTE_WINDOW_DAYS))
    attribute = f"""
WITH
touches AS (
  SELECT contact_id, event_date AS ts, {label} AS touch
  FROM events
  WHERE event IN ({touch_events}) AND event_date >= {wfrom} AND event_date < {end}),
targets AS (
  SELECT contact_id, event_date AS tts, coalesce({AMOUNT}, 0) AS amount
  FROM events
  WHERE event = '{TARGET_EVENT}' AND event_date >= {wfrom} AND event_date < {end}),
credited AS (
  SELECT t.touch AS touch, g.contact_id AS cid, g.tts AS tts, g.amount AS amount
  FROM touches AS t
  ASOF JOIN targets AS g ON t.contact_id = g.contact_id AND t.ts <= g.tts
  WHERE g.tts > t.ts AND g.tts >= {frm}
    AND toDate(g.tts) - toDate(t.ts) <= {ATTRIBUTE_WINDOW_DAYS}),
weighted AS (
  SELECT touch, amount, 1 / count() OVER (PARTITION BY cid, tts) AS w FROM credited),
eff AS (
  SELECT touch, count() AS effective_clicks, sum(w) AS conversions, sum(w * amount) AS value
  FROM weighted GROUP BY touch),
clicks AS (SELECT touch, count() AS clicks FROM touches GROUP BY touch)
SELECT c.touch, c.clicks, coalesce(e.effective_clicks, 0), coalesce(e.conversions, 0),
       coalesce(e.value, 0)
FROM clicks AS c LEFT JOIN eff AS e ON c.touch = e.touch
ORDER BY c.touch
SETTINGS join_use_nulls = 1"""

    # One pass over each contact's app_launch and custom_order events (the
    # table is ordered by contact): its initial time and its paid orders as
    # (period, amount) pairs; then per-cohort sums of 8-element arrays, WITH
    # ROLLUP for the whole-group rows, cumulated with arrayCumSum.
    n = PERIODS
    ltv = f"""
WITH
per_contact AS (
  SELECT minIf(event_date, event = '{LTV_INITIAL}' AND event_date < {end}) AS t0,
         groupArrayIf((event_date, assumeNotNull({AMOUNT})),
                      event = '{LTV_REVENUE}' AND {AMOUNT} IS NOT NULL) AS orders
  FROM events
  WHERE event IN ('{LTV_INITIAL}', '{LTV_REVENUE}')
    AND event_date >= {frm} AND event_date < {ch_ts(r.plus(r.end, n))}
  GROUP BY contact_id
  HAVING countIf(event = '{LTV_INITIAL}' AND event_date < {end}) > 0),
paid AS (
  SELECT toDate(t0) AS cohort,
         arrayMap(o -> (toDate(o.1) - toDate(t0), o.2),
                  arrayFilter(o -> o.1 >= t0 AND toDate(o.1) - toDate(t0) <= {n}, orders)) AS pv
  FROM per_contact),
cohort_rows AS (
  SELECT cohort, count() AS n, countIf(notEmpty(pv)) AS paying,
         sumForEach(arrayMap(i -> arraySum(arrayMap(x -> if(x.1 = i, x.2, 0), pv)),
                             range({n + 1}))) AS rev,
         sumForEach(arrayMap(i -> toUInt64(notEmpty(pv) AND arrayMin(arrayMap(x -> x.1, pv)) = i),
                             range({n + 1}))) AS newp
  FROM paid GROUP BY cohort WITH ROLLUP)
SELECT cohort, n, paying, p, revenue, revenue / n AS arpu,
       if(payers = 0, NULL, revenue / payers) AS arppu, new_payers
FROM cohort_rows
ARRAY JOIN range({n + 1}) AS p, arrayCumSum(rev) AS revenue, newp AS new_payers,
           arrayCumSum(newp) AS payers
ORDER BY cohort NULLS LAST, p
SETTINGS group_by_use_nulls = 1"""
    return {"funnel": funnel, "retention": retention, "attribute": attribute, "ltv": ltv}


class Chdb:
    name = "chdb"

    def __init__(self):
        import chdb  # noqa: F401
        from chdb import session
        self.dir = tempfile.mkdtemp(prefix="cohortdb-bench-chdb-")
        self.sess = session.Session(self.dir)
        self.version = f"chdb {chdb.__version__}, ClickHouse {self.sql('SELECT version()')[0][0]}"

    def sql(self, q):
        res = self.sess.query(q, "JSONCompact")
        text = res.bytes() if hasattr(res, "bytes") else bytes(res)
        if not text.strip():
            return []
        return json.loads(text)["data"]

    def load(self, events, contacts):
        for table, cols, path, order in (
            ("contacts", CONTACT_COLUMNS, contacts, "id"),
            ("events", EVENT_COLUMNS, events, "(contact_id, event_date)"),
        ):
            structure = ", ".join(f"{n} {ch_type(n, t)}" for n, t in cols)
            quoted = structure.replace("\\", "\\\\").replace("'", "\\'")
            self.sess.query(f"CREATE TABLE {table} ({structure}) ENGINE = MergeTree ORDER BY {order}")
            self.sess.query(
                f"INSERT INTO {table} SELECT * FROM file('{path}', 'CSV', '{quoted}') "
                "SETTINGS date_time_input_format = 'best_effort', "
                "input_format_csv_empty_as_default = 1")
        self.sess.query("OPTIMIZE TABLE events FINAL")
        return self.sql("SELECT count() FROM events")[0][0]

    def queries(self, r):
        return ch_queries(r)

    def run(self, q):
        return self.sql(q)

    def close(self):
        try:
            self.sess.close()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


# -------------------------------------------------------------------- DuckDB

def dk_ts(s):
    return f"TIMESTAMPTZ '{s} 00:00:00+00'"


def dk_queries(r):
    """DuckDB SQL of the four questions, keyed like QUERIES."""
    frm, end = dk_ts(r.first.isoformat()), dk_ts(r.end.isoformat())
    s1, s2, s3, s4 = FUNNEL_STEPS
    steps = ", ".join(f"'{s}'" for s in FUNNEL_STEPS)
    w = FUNNEL_WINDOW_DAYS
    # For each step-1 event in the range, the earliest next step at or after
    # the previous one (ASOF JOIN ... >=), kept while its calendar day is at
    # most `w` days after the step-1 day; a contact's depth is the best chain.
    funnel = f"""
WITH
e AS (SELECT contact_id, event, event_date AS ts FROM events
      WHERE event IN ({steps}) AND event_date >= {frm}
        AND event_date < {dk_ts(r.plus(r.end, w))}),
a AS (SELECT contact_id, ts AS t1, CAST(ts AS DATE) AS d1 FROM e
      WHERE event = '{s1}' AND ts < {end}),
b AS (SELECT a.contact_id, a.d1, x.ts AS t2 FROM a ASOF LEFT JOIN
        (SELECT contact_id, ts FROM e WHERE event = '{s2}') x
        ON a.contact_id = x.contact_id AND x.ts >= a.t1),
c AS (SELECT b.contact_id, b.d1, b.t2, x.ts AS t3 FROM b ASOF LEFT JOIN
        (SELECT contact_id, ts FROM e WHERE event = '{s3}') x
        ON b.contact_id = x.contact_id AND x.ts >= b.t2
      WHERE CAST(b.t2 AS DATE) - b.d1 <= {w}),
d AS (SELECT c.contact_id, c.d1, x.ts AS t4 FROM c ASOF LEFT JOIN
        (SELECT contact_id, ts FROM e WHERE event = '{s4}') x
        ON c.contact_id = x.contact_id AND x.ts >= c.t3
      WHERE CAST(c.t3 AS DATE) - c.d1 <= {w}),
depth AS (
  SELECT contact_id, max(lvl) AS level FROM (
    SELECT contact_id, 1 AS lvl FROM a
    UNION ALL SELECT contact_id, 2 FROM b WHERE CAST(t2 AS DATE) - d1 <= {w}
    UNION ALL SELECT contact_id, 3 FROM c WHERE CAST(t3 AS DATE) - d1 <= {w}
    UNION ALL SELECT contact_id, 4 FROM d WHERE CAST(t4 AS DATE) - d1 <= {w})
  GROUP BY contact_id)
SELECT level, count(*) FROM depth GROUP BY level ORDER BY level"""

    n = PERIODS
    retention = f"""
WITH
ini AS (SELECT contact_id, CAST(event_date AS DATE) AS d, min(event_date) AS first_ts
        FROM events
        WHERE event = '{RETENTION_EVENT}' AND event_date >= {frm} AND event_date < {end}
        GROUP BY ALL),
ret AS (SELECT contact_id, CAST(event_date AS DATE) AS d, max(event_date) AS last_ts
        FROM events
        WHERE event = '{RETENTION_EVENT}' AND event_date >= {frm}
          AND event_date < {dk_ts(r.plus(r.end, n))}
        GROUP BY ALL),
cohorts AS (SELECT d AS cohort, count(*) AS n FROM ini GROUP BY d),
kept AS (
  SELECT i.d AS cohort, r.d - i.d AS p, count(*) AS contacts
  FROM ini i JOIN ret r
    ON i.contact_id = r.contact_id AND r.d >= i.d AND r.d <= i.d + {n}
  WHERE r.d > i.d OR r.last_ts >= i.first_ts
  GROUP BY ALL)
SELECT c.cohort, c.n, g.p, coalesce(k.contacts, 0)
FROM cohorts c CROSS JOIN range(0, {n + 1}) g(p)
LEFT JOIN kept k ON k.cohort = c.cohort AND k.p = g.p
ORDER BY 1, 3"""

    touch_events = ", ".join(f"'{e}'" for e, _ in TOUCHES)
    label = "CASE " + " ".join(f"WHEN event = '{e}' THEN '{l}'" for e, l in TOUCHES) + " END"
    wfrom = dk_ts(r.plus(r.first, -ATTRIBUTE_WINDOW_DAYS))
    attribute = f"""
WITH
touches AS (
  SELECT contact_id, event_date AS ts, {label} AS touch
  FROM events
  WHERE event IN ({touch_events}) AND event_date >= {wfrom} AND event_date < {end}),
targets AS (
  SELECT contact_id, event_date AS tts, coalesce({AMOUNT}, 0) AS amount
  FROM events
  WHERE event = '{TARGET_EVENT}' AND event_date >= {wfrom} AND event_date < {end}),
credited AS (
  SELECT t.touch, g.contact_id AS cid, g.tts, g.amount
  FROM touches t ASOF JOIN targets g ON t.contact_id = g.contact_id AND g.tts >= t.ts
  WHERE g.tts > t.ts AND g.tts >= {frm}
    AND CAST(g.tts AS DATE) - CAST(t.ts AS DATE) <= {ATTRIBUTE_WINDOW_DAYS}),
weighted AS (
  SELECT touch, amount, 1.0 / count(*) OVER (PARTITION BY cid, tts) AS w FROM credited),
eff AS (
  SELECT touch, count(*) AS effective_clicks, sum(w) AS conversions, sum(w * amount) AS value
  FROM weighted GROUP BY touch),
clicks AS (SELECT touch, count(*) AS clicks FROM touches GROUP BY touch)
SELECT c.touch, c.clicks, coalesce(e.effective_clicks, 0), coalesce(e.conversions, 0),
       coalesce(e.value, 0)
FROM clicks c LEFT JOIN eff e USING (touch)
ORDER BY c.touch"""

    ltv = f"""
WITH
init AS (
  SELECT contact_id, min(event_date) AS t0, CAST(min(event_date) AS DATE) AS cohort
  FROM events
  WHERE event = '{LTV_INITIAL}' AND event_date >= {frm} AND event_date < {end}
  GROUP BY contact_id),
rev AS (
  SELECT i.cohort, e.contact_id, CAST(e.event_date AS DATE) - i.cohort AS p, e.{AMOUNT} AS v
  FROM events e JOIN init i USING (contact_id)
  WHERE e.event = '{LTV_REVENUE}' AND e.{AMOUNT} IS NOT NULL
    AND e.event_date >= {frm} AND e.event_date < {dk_ts(r.plus(r.end, n))}
    AND e.event_date >= i.t0 AND CAST(e.event_date AS DATE) - i.cohort <= {n}),
cohorts AS (SELECT cohort, count(*) AS n FROM init GROUP BY cohort),
per_p AS (SELECT cohort, p, sum(v) AS revenue FROM rev GROUP BY ALL),
first_pay AS (SELECT cohort, contact_id, min(p) AS fp FROM rev GROUP BY ALL),
new_p AS (SELECT cohort, fp AS p, count(*) AS new_payers FROM first_pay GROUP BY ALL),
dense AS (
  SELECT c.cohort, c.n, g.p, coalesce(r.revenue, 0) AS revenue,
         coalesce(np.new_payers, 0) AS new_payers
  FROM cohorts c CROSS JOIN range(0, {n + 1}) g(p)
  LEFT JOIN per_p r ON r.cohort = c.cohort AND r.p = g.p
  LEFT JOIN new_p np ON np.cohort = c.cohort AND np.p = g.p),
cum AS (
  SELECT cohort, n, p, new_payers,
         sum(revenue) OVER (PARTITION BY cohort ORDER BY p) AS revenue,
         sum(new_payers) OVER (PARTITION BY cohort ORDER BY p) AS payers_by_p,
         sum(new_payers) OVER (PARTITION BY cohort) AS paying
  FROM dense),
all_rows AS (
  SELECT cohort, n, paying, p, revenue, new_payers, payers_by_p FROM cum
  UNION ALL
  SELECT NULL, sum(n), sum(paying), p, sum(revenue), sum(new_payers), sum(payers_by_p)
  FROM cum GROUP BY p)
SELECT cohort, n, paying, p, revenue, revenue / n AS arpu,
       CASE WHEN payers_by_p = 0 THEN NULL ELSE revenue / payers_by_p END AS arppu,
       new_payers
FROM all_rows ORDER BY cohort NULLS LAST, p"""
    return {"funnel": funnel, "retention": retention, "attribute": attribute, "ltv": ltv}


class Duck:
    name = "duckdb"

    def __init__(self):
        import duckdb
        self.con = duckdb.connect(":memory:")
        self.con.execute("SET TimeZone = 'UTC'")
        self.version = f"duckdb {duckdb.__version__}"

    def load(self, events, contacts):
        for table, cols, path in (("contacts", CONTACT_COLUMNS, contacts),
                                  ("events", EVENT_COLUMNS, events)):
            columns = ", ".join(f"'{n}': '{t}'" for n, t in cols)
            self.con.execute(
                f"CREATE TABLE {table} AS SELECT * FROM read_csv('{path}', header = false, "
                f"auto_detect = false, delim = ',', quote = '\"', escape = '\"', "
                f"columns = {{{columns}}})")
        return self.con.execute("SELECT count(*) FROM events").fetchone()[0]

    def queries(self, r):
        return dk_queries(r)

    def run(self, q):
        return self.con.execute(q).fetchall()

    def close(self):
        self.con.close()


# ------------------------------------------------------------ normalisation

def num(v):
    return None if v is None else float(v)


def normalise(query, rows):
    """Peer rows → the shape cohortdb-bench compares:
    funnel: {"steps": [contacts reaching step 1, 2, 3, 4]} (cumulative);
    retention: {"cohorts": {day: {"contacts": n, "retained": [p0..pN]}}};
    attribute: {"touches": {label: {"clicks", "effective_clicks",
                "conversions", "value"}}};
    ltv: {"cohorts": {day or "all": {"initial", "paying",
          "revenue": [cumulative p0..pN], "new_payers": [p0..pN]}}}."""
    if query == "funnel":
        by_level = {int(level): int(n) for level, n in rows}
        steps = []
        for k in range(1, len(FUNNEL_STEPS) + 1):
            steps.append(sum(n for level, n in by_level.items() if level >= k))
        return {"steps": steps}
    if query == "retention":
        cohorts = {}
        if rows and len(rows[0]) == PERIODS + 3:  # chdb: cohort, members, p0..pN
            for row in rows:
                cohorts[str(row[0])] = {"contacts": int(row[1]),
                                        "retained": [int(v) for v in row[2:]]}
        else:  # duckdb: cohort, members, p, contacts
            for cohort, n, p, kept in rows:
                c = cohorts.setdefault(str(cohort), {"contacts": int(n),
                                                     "retained": [0] * (PERIODS + 1)})
                c["retained"][int(p)] = int(kept)
        return {"cohorts": cohorts}
    if query == "attribute":
        return {"touches": {str(t): {"clicks": int(c), "effective_clicks": int(e),
                                     "conversions": num(conv), "value": num(v)}
                            for t, c, e, conv, v in rows}}
    if query == "ltv":
        cohorts = {}
        for cohort, n, paying, p, revenue, _arpu, _arppu, new in rows:
            key = "all" if cohort is None else str(cohort)
            c = cohorts.setdefault(key, {"initial": int(n), "paying": int(paying),
                                         "revenue": [0.0] * (PERIODS + 1),
                                         "new_payers": [0] * (PERIODS + 1)})
            c["revenue"][int(p)] = num(revenue)
            c["new_payers"][int(p)] = int(new)
        return {"cohorts": cohorts}
    raise ValueError(query)


# ------------------------------------------------------------------- driver

def measure(peer_cls, args, r):
    out = {"available": False}
    try:
        peer = peer_cls()
    except Exception as e:  # missing module or broken install
        out["error"] = f"{type(e).__name__}: {e}"
        return out
    try:
        out["version"] = peer.version
        log(f"{peer.name}: loading {args.events} ...")
        started = time.perf_counter()
        out["event_rows"] = int(peer.load(os.path.abspath(args.events),
                                          os.path.abspath(args.contacts)))
        out["load_seconds"] = time.perf_counter() - started
        log(f"{peer.name}: {out['event_rows']} events loaded in {out['load_seconds']:.2f} s")
        queries = peer.queries(r)
        results = {}
        for name in args.queries:
            q = queries[name]
            rows = peer.run(q)  # warm-up
            times = []
            for _ in range(args.runs):
                t = time.perf_counter()
                rows = peer.run(q)
                times.append(time.perf_counter() - t)
            results[name] = {"seconds": statistics.median(times), "runs": times,
                             "result": normalise(name, rows)}
            log(f"{peer.name}: {name}: median {results[name]['seconds']:.4f} s")
            if args.show_sql:
                log(q)
        out["queries"] = results
        out["available"] = True
    except Exception as e:
        out["error"] = f"{type(e).__name__}: {e}"
        log(traceback.format_exc())
    finally:
        try:
            peer.close()
        except Exception:
            pass
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", required=True, help="events CSV of cohortdb-datagen")
    ap.add_argument("--contacts", required=True, help="contacts CSV of cohortdb-datagen")
    ap.add_argument("--from", dest="first", required=True, help="first day, YYYY-MM-DD")
    ap.add_argument("--to", dest="last", required=True, help="last day, YYYY-MM-DD")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per query (after 1 warm-up)")
    ap.add_argument("--peers", default="chdb,duckdb", help="comma-separated: chdb, duckdb")
    ap.add_argument("--queries", default=",".join(QUERIES), help="comma-separated subset")
    ap.add_argument("--show-sql", action="store_true", help="print each query to stderr")
    ap.add_argument("--print-sql", action="store_true", help="print all queries and exit")
    ap.add_argument("--json", action="store_true", help="one JSON line on stdout")
    args = ap.parse_args()
    args.queries = [q for q in args.queries.split(",") if q]
    r = Range(args.first, args.last)
    if args.print_sql:
        for title, qs in (("chdb", ch_queries(r)), ("duckdb", dk_queries(r))):
            for name in args.queries:
                print(f"-- {title}: {name}{qs[name]};\n")
        return
    classes = {"chdb": Chdb, "duckdb": Duck}
    report = {"from": args.first, "to": args.last, "runs": args.runs, "peers": {}}
    for name in [p for p in args.peers.split(",") if p]:
        if name not in classes:
            report["peers"][name] = {"available": False, "error": "unknown peer"}
            continue
        report["peers"][name] = measure(classes[name], args, r)
    report["max_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if args.json:
        print(json.dumps(report, separators=(",", ":")))
    else:
        for name, p in report["peers"].items():
            if not p["available"]:
                print(f"{name}: unavailable ({p.get('error')})")
                continue
            print(f"{name} ({p['version']}): {p['event_rows']} events, load {p['load_seconds']:.2f} s")
            for q, res in p["queries"].items():
                print(f"  {q:<10} {res['seconds']:.4f} s  {json.dumps(res['result'])}")


if __name__ == "__main__":
    main()
