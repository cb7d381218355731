#!/usr/bin/env bash
# The scale-out benchmark (docs/benchmark.md "Scale-out"): loads the 10 M-event
# benchmark dataset into a release server and times FUNNEL and RETENTION there
# (cohortdb-bench analytics), exports it with `cohortdb export` beside DuckDB
# writing the same rows as Hive-partitioned Parquet, then runs the same two
# statements (their SQL forms) with plain DataFusion over the export and on
# Ballista with 1 executor × 2 cores, 2 executors × 1 core and 2 × 2 cores,
# reporting the median of 3 runs and the shuffle bytes each job wrote.
# KEYED=1 adds the keyed statements (FUNNEL BY, LTV GROUP BY, PATHS BY) on
# the single server, plain DataFusion and Ballista 1 executor × 2 cores;
# ONLY_KEYED=1 runs just those, over an existing export.
#
#   scripts/bench-scale-out.sh [WORK_DIR]   (default /tmp/cohortdb-scale-out)
#
# Needs release builds of cohortdb, cohortdb-bench and the Ballista binaries
# (cargo build --release -p cohortdb-server -p cohortdb-bench;
#  cargo build --release -p cohortdb-dist --features ballista --bins)
# and Python's duckdb module. CONTACTS / DAYS / PER_CONTACT size the dataset.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${CARGO_TARGET_DIR:-$PWD/target}/release"
work="${1:-/tmp/cohortdb-scale-out}"
contacts="${CONTACTS:-100000}"
days="${DAYS:-30}"
per="${PER_CONTACT:-100}"
mkdir -p "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

funnel="FUNNEL STEP event = 'app_launch', STEP event = 'browse_sku_page', STEP event = 'add_to_cart', STEP event = 'custom_order' WITHIN 7 DAYS FROM '2025-06-01' TO '2025-06-30'"
retention="RETENTION INITIAL event = 'app_launch' RETURN event = 'app_launch' FROM '2025-06-01' TO '2025-06-30' BY DAY PERIODS 7"

if [ ! -f "$work/data.done" ]; then
  rm -rf "$work/data"
  echo "== loading ${contacts} contacts × ${per} events over ${days} days; single-server timings"
  "$bin/cohortdb" serve --data-dir "$work/data" --listen 127.0.0.1:55490 --http-listen "" \
    >"$work/server.log" 2>&1 &
  server=$!
  pids+=("$server")
  sleep 2
  "$bin/cohortdb-bench" analytics --url "host=127.0.0.1 port=55490 user=admin dbname=cohortdb" \
    --contacts "$contacts" --days "$days" --events-per-contact "$per" --no-peers --runs 3 \
    --csv-dir "$work/csv" | tee "$work/single-server.txt"
  kill "$server"; wait "$server" 2>/dev/null || true
  touch "$work/data.done"
fi

if [ "${ONLY_KEYED:-0}" != 1 ]; then
echo "== cohortdb export"
rm -rf "$work/export"
/usr/bin/time -f "export: %e s wall, %M KiB peak RSS" \
  "$bin/cohortdb" export --data-dir "$work/data" --out "$work/export" 2>&1 | tail -n 2
du -sb "$work/export/events" | awk '{print "export events bytes: " $1}'
find "$work/export/events" -name '*.parquet' | wc -l | awk '{print "export files: " $1}'

echo "== DuckDB: the same rows to Hive-partitioned Parquet"
python3 - "$work" <<'EOF'
import sys, time, duckdb, os
work = sys.argv[1]
con = duckdb.connect()
con.execute("SET threads = 2")
con.execute(f"CREATE TABLE events AS SELECT * FROM read_parquet('{work}/export/events/*/*.parquet', hive_partitioning = true)")
n = con.execute("SELECT count(*) FROM events").fetchone()[0]
out = f"{work}/duckdb-export"
os.system(f"rm -rf {out}")
t = time.time()
con.execute(f"COPY (SELECT * FROM events ORDER BY contact_id, event_date) TO '{out}' (FORMAT parquet, PARTITION_BY (event_day), COMPRESSION zstd)")
s = time.time() - t
size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out) for f in fs)
print(f"duckdb COPY: {n} rows in {s:.2f} s: {n/s:,.0f} rows/s, {size/s/1e6:.1f} MB/s, {size/n:.1f} bytes/event, {size} bytes")
EOF

fi

median3() { sort -n | sed -n 2p; }
time_query() { # args: label, then the cohortdb-dist query arguments
  local label="$1"; shift
  local ts=()
  for _ in 1 2 3; do
    local s e
    s=$(date +%s.%N)
    "$bin/cohortdb-dist" query "$@" >/dev/null 2>"$work/last.err" || { cat "$work/last.err"; exit 1; }
    e=$(date +%s.%N)
    ts+=("$(echo "$e - $s" | bc)")
  done
  printf '%s: median %.3f s (runs: %s)\n' "$label" "$(printf '%s\n' "${ts[@]}" | median3)" "${ts[*]}"
}

if [ "${ONLY_KEYED:-0}" != 1 ]; then
echo "== plain DataFusion over the export (one process)"
for p in 2; do
  time_query "DataFusion FUNNEL, $p partitions" --partitions $p --data "$work/export" "$funnel"
  time_query "DataFusion RETENTION, $p partitions" --partitions $p --data "$work/export" "$retention"
done

run_cluster() { # args: executors, vcores each
  local n="$1" v="$2"
  local port=50150
  "$bin/cohortdb-scheduler" --bind 127.0.0.1:$port >"$work/scheduler.log" 2>&1 &
  local sched=$!
  local eps=()
  for i in $(seq 1 "$n"); do
    rm -rf "$work/exec-$i"
    "$bin/cohortdb-executor" --scheduler 127.0.0.1:$port --port $((port + 10 * i + 1)) \
      --grpc-port $((port + 10 * i + 2)) --work-dir "$work/exec-$i" --vcores "$v" \
      >"$work/executor-$i.log" 2>&1 &
    eps+=($!)
  done
  local got=0
  for _ in $(seq 1 300); do
    got=$(curl -fsS http://127.0.0.1:$port/api/executors 2>/dev/null | grep -o '"last_seen"' | wc -l || true)
    [ "$got" -ge "$n" ] && break
    sleep 0.2
  done
  for stmt in funnel retention; do
    local text="$funnel"
    [ $stmt = retention ] && text="$retention"
    local before
    before=$(du -sb "$work"/exec-* | awk '{s += $1} END {print s}')
    time_query "Ballista $n×$v cores ${stmt^^}, $((n * v)) partitions" \
      --remote df://127.0.0.1:$port --partitions $((n * v)) --data "$work/export" "$text"
    local after
    after=$(du -sb "$work"/exec-* | awk '{s += $1} END {print s}')
    echo "  shuffle files written by the 3 runs: $(( (after - before) / 3 )) bytes per run"
  done
  kill "${eps[@]}" "$sched" 2>/dev/null || true
  wait "${eps[@]}" "$sched" 2>/dev/null || true
}

echo "== Ballista"
run_cluster 1 2
run_cluster 2 1
run_cluster 2 2

echo "== matching events (for shuffle bytes per matching event)"
"$bin/cohortdb-dist" query --data "$work/export" \
  "SELECT count(*) FILTER (WHERE event IN ('app_launch', 'browse_sku_page', 'add_to_cart', 'custom_order')) AS funnel_events, count(*) FILTER (WHERE event = 'app_launch') AS retention_events FROM events"

fi

if [ "${KEYED:-0}" = 1 ]; then
  funnel_by="FUNNEL STEP event = 'app_launch', STEP event = 'browse_sku_page', STEP event = 'add_to_cart', STEP event = 'custom_order' WITHIN 7 DAYS FROM '2025-06-01' TO '2025-06-30' BY city"
  ltv_by="LTV INITIAL EVENT event = 'app_launch' REVENUE event = 'custom_order' VALUE p_amount FROM '2025-06-01' TO '2025-06-23' BY WEEK PERIODS 1 GROUP BY utm_source"
  paths_by="PATHS EVENTS event IN ('app_launch', 'browse_wxapp_page', 'browse_sku_page', 'add_to_cart', 'custom_order') START AT event = 'app_launch' SESSION GAP 30 MINUTES FROM '2025-06-01' TO '2025-06-30' BY s_page_path DEPTH 4"
  echo "== keyed statements: single server"
  "$bin/cohortdb" serve --data-dir "$work/data" --listen 127.0.0.1:55491 --http-listen "" \
    >"$work/server-keyed.log" 2>&1 &
  server=$!
  pids+=("$server")
  for _ in $(seq 1 100); do
    psql -h 127.0.0.1 -p 55491 -U admin -d cohortdb -c 'SELECT 1' >/dev/null 2>&1 && break
    sleep 0.2
  done
  for name in funnel_by ltv_by paths_by; do
    ts=()
    for _ in 1 2 3; do
      s=$(date +%s.%N)
      psql -h 127.0.0.1 -p 55491 -U admin -d cohortdb -qAt -c "${!name}" >/dev/null
      e=$(date +%s.%N)
      ts+=("$(echo "$e - $s" | bc)")
    done
    printf 'server %s: median %.3f s (runs: %s)\n' "$name" "$(printf '%s\n' "${ts[@]}" | median3)" "${ts[*]}"
  done
  kill "$server"; wait "$server" 2>/dev/null || true
  echo "== keyed statements: plain DataFusion, 2 partitions"
  for name in funnel_by ltv_by paths_by; do
    time_query "DataFusion $name" --partitions 2 --data "$work/export" "${!name}"
  done
  echo "== keyed statements: Ballista 1×2"
  port=50150
  "$bin/cohortdb-scheduler" --bind 127.0.0.1:$port >"$work/scheduler.log" 2>&1 &
  sched=$!
  rm -rf "$work/exec-1"
  "$bin/cohortdb-executor" --scheduler 127.0.0.1:$port --port $((port + 11)) \
    --grpc-port $((port + 12)) --work-dir "$work/exec-1" --vcores 2 >"$work/executor-1.log" 2>&1 &
  ep=$!
  pids+=("$sched" "$ep")
  for _ in $(seq 1 300); do
    curl -fsS http://127.0.0.1:$port/api/executors 2>/dev/null | grep -q '"last_seen"' && break
    sleep 0.2
  done
  for name in funnel_by ltv_by paths_by; do
    time_query "Ballista 1x2 $name" --remote df://127.0.0.1:$port --partitions 2 --data "$work/export" "${!name}"
  done
fi
