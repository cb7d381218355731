"""psycopg2 against cohortdb: simple protocol, client-side parameters, implicit BEGIN."""
import os, sys
import psycopg2

port = int(os.environ["COHORTDB_PORT"])
conn = psycopg2.connect(host="127.0.0.1", port=port, user="admin", dbname="cohortdb",
                        application_name="psycopg2-test")
assert conn.server_version >= 160000, conn.server_version
cur = conn.cursor()
cur.execute("SELECT version()")
v = cur.fetchone()[0]
assert v.startswith("PostgreSQL 16.") and "cohortdb" in v, v
cur.execute("INSERT INTO contacts (name, email) VALUES (%s, %s)", ("Ada", "ada@example.com"))
conn.commit()
cur.execute("SELECT name, email FROM contacts WHERE name = %s", ("Ada",))
assert cur.fetchall() == [("Ada", "ada@example.com")]
cur.execute("SELECT %s::bigint + 1, %s::double precision, %s::date", (41, 1.5, "2025-06-01"))
r = cur.fetchone()
assert r[0] == 42 and r[1] == 1.5 and str(r[2]) == "2025-06-01", r
cur.execute("SHOW TRANSACTION ISOLATION LEVEL")
assert cur.fetchone()[0] == "read committed"
conn.rollback()
try:
    cur.execute("SELECT * FROM no_such_table")
    raise SystemExit("expected an error")
except psycopg2.Error as e:
    assert e.pgcode == "42P01", e.pgcode
conn.rollback()
conn.autocommit = True
cur.execute("SELECT current_setting('server_version_num')")
assert cur.fetchone()[0].startswith("16")
# RowDescription: table OID and column number of columns read from a relation
cur.execute("SELECT oid FROM pg_class WHERE relname = 'contacts'")
contacts_oid = cur.fetchone()[0]
cur.execute("SELECT c.name, c.id, 1 AS x FROM contacts c")
d = cur.description
assert (d[0].table_oid, d[0].table_column) == (contacts_oid, 2), d
assert (d[1].table_oid, d[1].table_column) == (contacts_oid, 1), d
assert d[2].table_oid in (None, 0), d
print("psycopg2 ok")
