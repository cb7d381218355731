#!/usr/bin/env bash
# The scale-out demo on one machine, no docker: builds cohortdb and the
# Ballista binaries, loads the demo shop into a fresh data directory,
# exports it as Hive-partitioned Parquet (`cohortdb export`), starts a
# scheduler and 2 executors on 127.0.0.1 (separate ports and work dirs),
# runs a FUNNEL and a RETENTION on the cluster and the same statements on
# the single server's data with plain DataFusion, prints the rows and each
# job's stage metrics, and stops everything it started.
#
#   scripts/dist-demo.sh [WORK_DIR]      (default: a new temporary directory)
#
# Ports: scheduler 50050; executors 50051/50052 and 50061/50062.
# PROFILE=debug builds the debug profile instead (much faster to build cold,
# slower to run); CARGO_TARGET_DIR is honoured.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-$PWD/target}"
profile="${PROFILE:-release}"
work="${1:-$(mktemp -d -t cohortdb-dist-demo.XXXXXX)}"
mkdir -p "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

flag=(--release)
[ "$profile" = debug ] && flag=()
echo "== building (${profile})"
cargo build "${flag[@]}" -p cohortdb-server
cargo build "${flag[@]}" -p cohortdb-dist --features ballista --bins
bin="$target/$profile"

echo "== loading the demo shop into $work/data"
"$bin/cohortdb" serve --data-dir "$work/data" --listen 127.0.0.1:0 --http-listen "" --demo \
  >"$work/server.log" 2>&1 &
server=$!
pids+=("$server")
for _ in $(seq 1 600); do
  grep -q "listening on" "$work/server.log" && break
  kill -0 "$server" 2>/dev/null || { cat "$work/server.log"; exit 1; }
  sleep 0.2
done
kill "$server"
wait "$server" 2>/dev/null || true

echo "== exporting to $work/export"
"$bin/cohortdb" export --data-dir "$work/data" --out "$work/export" 2>&1 | tail -n 3

echo "== starting a scheduler and 2 executors"
"$bin/cohortdb-scheduler" --bind 127.0.0.1:50050 >"$work/scheduler.log" 2>&1 &
pids+=($!)
"$bin/cohortdb-executor" --scheduler 127.0.0.1:50050 --port 50051 --grpc-port 50052 \
  --work-dir "$work/executor-1" --vcores 1 >"$work/executor-1.log" 2>&1 &
pids+=($!)
"$bin/cohortdb-executor" --scheduler 127.0.0.1:50050 --port 50061 --grpc-port 50062 \
  --work-dir "$work/executor-2" --vcores 1 >"$work/executor-2.log" 2>&1 &
pids+=($!)
n=0
for _ in $(seq 1 300); do
  n=$(curl -fsS http://127.0.0.1:50050/api/executors 2>/dev/null | grep -o '"last_seen"' | wc -l || true)
  [ "$n" -ge 2 ] && break
  sleep 0.2
done
[ "$n" -ge 2 ] || { echo "executors did not register"; tail "$work"/*.log; exit 1; }
echo "$n executors registered"

funnel="FUNNEL STEP event = 'app_launch' AS 'launch', STEP event = 'browse_sku_page' AS 'sku', STEP event = 'custom_order' AS 'order' WITHIN 24 HOURS FROM '2025-06-01' TO '2025-06-20' AS OF '2025-07-01 00:00:00'"
retention="RETENTION INITIAL event = 'app_launch' RETURN event = 'custom_order' BY WEEK PERIODS 3 FROM '2025-06-01' TO '2025-06-21' AS OF '2025-07-01 00:00:00'"
for stmt in "$funnel" "$retention"; do
  echo
  echo "== $stmt"
  echo "-- on Ballista (2 executors, 4 partitions)"
  "$bin/cohortdb-dist" query --remote df://127.0.0.1:50050 --partitions 4 --data "$work/export" "$stmt"
  echo "-- plain DataFusion in one process, same Parquet"
  "$bin/cohortdb-dist" query --partitions 2 --data "$work/export" "$stmt"
done

echo
echo "== stage metrics of the cluster jobs"
jobs=$(curl -fsS http://127.0.0.1:50050/api/jobs | grep -o '"job_id":"[^"]*"' | cut -d'"' -f4 || true)
for j in $jobs; do
  echo "-- job $j"
  curl -fsS "http://127.0.0.1:50050/api/job/$j/stages"
  echo
done
echo
echo "work directory: $work (logs: $work/*.log)"
