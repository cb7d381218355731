"""Sentinel `SELECT 1` latency while a heavy FUNNEL loop and an oversize
query loop (a 1.3 GB string_agg, refused with 54000) run on other
connections: how much one session's heavy work delays another's small one.

    python bench/sentinel_latency.py "host=127.0.0.1 port=5433 user=cohortdb dbname=cohortdb" 30 \
        "FUNNEL STEP event = 'app_launch', STEP event = 'browse_sku_page', STEP event = 'add_to_cart' WITHIN 7 DAYS FROM '2025-06-01' TO '2025-06-30' BY city"

Needs psycopg 3 (tests/clients/.venv has it). docs/benchmark.md has results.
"""
import sys, threading, time, statistics
import psycopg

DSN = sys.argv[1]
SECS = float(sys.argv[2]) if len(sys.argv) > 2 else 30
FUNNEL = sys.argv[3]
stop = threading.Event()
counts = {"funnel": 0, "oversize": 0, "oversize_codes": {}}

def funnel_loop():
    with psycopg.connect(DSN, autocommit=True) as c:
        while not stop.is_set():
            c.execute(FUNNEL).fetchall()
            counts["funnel"] += 1

def oversize_loop():
    with psycopg.connect(DSN, autocommit=True) as c:
        while not stop.is_set():
            try:
                c.execute("SELECT length(string_agg(repeat('x', 1000000), '')) FROM generate_series(1, 1300)").fetchall()
            except psycopg.Error as e:
                code = e.sqlstate
                counts["oversize_codes"][code] = counts["oversize_codes"].get(code, 0) + 1
            counts["oversize"] += 1

threads = [threading.Thread(target=f) for f in (funnel_loop, oversize_loop)]
for t in threads: t.start()
time.sleep(1)
lat = []
with psycopg.connect(DSN, autocommit=True) as c:
    end = time.time() + SECS
    while time.time() < end:
        t0 = time.perf_counter()
        c.execute("SELECT 1").fetchall()
        lat.append((time.perf_counter() - t0) * 1000)
        time.sleep(0.02)
stop.set()
for t in threads: t.join()
lat.sort()
p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
print(f"sentinel SELECT 1: n={len(lat)} p50={p(0.5):.2f} ms p99={p(0.99):.2f} ms max={lat[-1]:.2f} ms")
print(f"funnels completed: {counts['funnel']}, oversize queries: {counts['oversize']} {counts['oversize_codes']}")
