"""psycopg 3 against cohortdb: extended protocol, binary parameters and results, type info."""
import os, datetime
import psycopg
from psycopg.types import TypeInfo

port = int(os.environ["COHORTDB_PORT"])
with psycopg.connect(host="127.0.0.1", port=port, user="admin", dbname="cohortdb",
                     autocommit=True) as conn:
    conn.execute("INSERT INTO contacts (name, email) VALUES (%s, %s)", ("Bob", "bob@example.com"))
    row = conn.execute("SELECT name, email FROM contacts WHERE name = %s", ("Bob",)).fetchone()
    assert row == ("Bob", "bob@example.com"), row
    for binary in (False, True):
        cur = conn.cursor(binary=binary)
        r = cur.execute("SELECT %s::bigint, %s::double precision, %s::boolean, %s::text, %s::date",
                        (7, 2.5, True, "héllo", datetime.date(2025, 6, 1))).fetchone()
        assert r == (7, 2.5, True, "héllo", datetime.date(2025, 6, 1)), r
        r = cur.execute("SELECT id, name, created_at FROM contacts WHERE name = %s", ("Bob",)).fetchone()
        assert r[1] == "Bob" and isinstance(r[2], datetime.datetime), r
    # parameters nothing in the statement types take the type the client declared
    for binary in (False, True):
        cur = conn.cursor(binary=binary)
        vals = (7, 2.5, True, "txt", datetime.date(2025, 6, 1),
                datetime.datetime(2025, 6, 1, 8, 0, tzinfo=datetime.timezone.utc))
        r = cur.execute("SELECT %s, %s, %s, %s, %s, %s", vals).fetchone()
        assert r == vals, (binary, r)
    r = conn.execute("SELECT %s + 1", (41,)).fetchone()
    assert r[0] == 42, r
    t = TypeInfo.fetch(conn, "text")
    assert t is not None and t.oid == 25, t
    t = TypeInfo.fetch(conn, "int8")
    assert t is not None and t.oid == 20, t
    assert conn.execute("SELECT to_regtype('integer')::text").fetchone()[0] == "integer"
    assert conn.execute("SELECT 'int4'::regtype::oid").fetchone()[0] == 23
    try:
        conn.execute("SELECT nosuchcol FROM contacts")
        raise SystemExit("expected an error")
    except psycopg.Error as e:
        assert e.sqlstate == "42703", e.sqlstate
    try:
        conn.execute("SELEC 1")
        raise SystemExit("expected an error")
    except psycopg.Error as e:
        assert e.sqlstate == "42601", e.sqlstate
    # binary COPY both ways: psycopg decodes what cohortdb encodes
    with conn.cursor() as cur:
        with cur.copy("COPY contacts (name, email, birthday) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["text", "text", "date"])
            copy.write_row(("Cleo", "cleo@example.com", datetime.date(1990, 3, 4)))
            copy.write_row(("Dan", None, None))
        query = ("COPY (SELECT id, name, email, birthday, created_at, true AS ok, 2.5::double precision AS x, "
                 "ARRAY['a', NULL, 'c'] AS tags FROM contacts WHERE name IN ('Cleo', 'Dan') ORDER BY name) "
                 "TO STDOUT (FORMAT BINARY)")
        with cur.copy(query) as copy:
            copy.set_types(["int8", "text", "text", "date", "timestamptz", "bool", "float8", "text[]"])
            rows = list(copy.rows())
        assert [r[1:4] for r in rows] == [("Cleo", "cleo@example.com", datetime.date(1990, 3, 4)),
                                          ("Dan", None, None)], rows
        assert all(isinstance(r[0], int) and isinstance(r[4], datetime.datetime) for r in rows), rows
        assert rows[0][4].tzinfo is not None, rows
        assert rows[0][5:] == (True, 2.5, ["a", None, "c"]), rows
        try:
            with cur.copy("COPY (SELECT 1.5::decimal(10,2) AS amount) TO STDOUT (FORMAT BINARY)") as copy:
                list(copy.rows())
            raise SystemExit("expected 0A000")
        except psycopg.Error as e:
            assert e.sqlstate == "0A000" and "amount" in str(e), (e.sqlstate, str(e))
    # RowDescription from Describe: table OID and column number per column
    contacts_oid = conn.execute("SELECT oid FROM pg_class WHERE relname = 'contacts'").fetchone()[0]
    view_oid = conn.execute("SELECT oid FROM pg_class WHERE relname = 'contact_view'").fetchone()[0]
    city_num = conn.execute("SELECT attnum FROM pg_attribute WHERE attrelid = %s AND attname = 'city'",
                            (view_oid,)).fetchone()[0]
    cur = conn.execute("SELECT c.id, v.city, count(*) AS n FROM contacts c JOIN contact_view v ON v.id = c.id "
                       "GROUP BY c.id, v.city")
    res = cur.pgresult
    origins = [(res.ftable(i), res.ftablecol(i)) for i in range(res.nfields)]
    assert origins == [(contacts_oid, 1), (view_oid, city_num), (0, 0)], origins
    # bound parameters in CALL procedures and identity-keyed INSERT, text and binary
    conn.execute("ALTER TABLE events ADD COLUMN IF NOT EXISTS p_amount DOUBLE")
    for binary in (False, True):
        cur = conn.cursor(binary=binary)
        ext = f"p3-user-{int(binary)}"
        cid, created = cur.execute("CALL identify(%s, %s, %s)",
                                   ("wxapp_shop", ext, '{"name": "Pat O\'Neil"}')).fetchone()
        assert created is True and cid > 0, (cid, created)
        again = cur.execute("CALL identify(%s, %s)", ("wxapp_shop", ext)).fetchone()
        assert again == (cid, False), again
        assert cur.execute("SELECT name FROM contacts WHERE id = %s", (cid,)).fetchone() == ("Pat O'Neil",)
        cur.execute("INSERT INTO events (external_id, channel_id, event, event_date, p_amount) "
                    "VALUES (%s, %s, %s, %s, %s)",
                    (ext, "wxapp_shop", "custom_order",
                     datetime.datetime(2025, 6, 1, 10, 0, tzinfo=datetime.timezone.utc), 12.5))
        r = cur.execute("SELECT contact_id, event_date, p_amount FROM events WHERE contact_id = %s",
                        (cid,)).fetchall()
        assert r == [(cid, datetime.datetime(2025, 6, 1, 10, 0, tzinfo=datetime.timezone.utc), 12.5)], r
    other = conn.execute("CALL identify(%s, %s)", ("wxapp_shop", "p3-merge-me")).fetchone()[0]
    conn.execute("CALL merge_contacts(%s, %s)", (cid, other))
    assert conn.execute("CALL identify(%s, %s)", ("wxapp_shop", "p3-merge-me")).fetchone() == (cid, False)
    try:
        conn.execute("CALL merge_contacts(%s, %s)", (cid, 999999))
        raise SystemExit("expected 42704")
    except psycopg.Error as e:
        assert e.sqlstate == "42704", (e.sqlstate, str(e))
    # INSERT … RETURNING the id the server assigned, with bound parameters
    for binary in (False, True):
        cur = conn.cursor(binary=binary)
        new_id = cur.execute("INSERT INTO contacts (name, email) VALUES (%s, %s) RETURNING id",
                             ("Ret", f"ret{int(binary)}@example.com")).fetchone()[0]
        assert cur.execute("SELECT email FROM contacts WHERE id = %s", (new_id,)).fetchone() == (
            f"ret{int(binary)}@example.com",)
    # pipelines: an error skips the rest until Sync
    assert conn.execute("SELECT 1").fetchone() == (1,)
    with conn.transaction():
        conn.execute("SELECT 1")
    # nested transactions are savepoints; a failed inner block rolls back to
    # its savepoint and the outer block goes on
    with conn.transaction():
        conn.execute("SELECT 1")
        try:
            with conn.transaction():
                conn.execute("SELECT * FROM no_such_table")
            raise SystemExit("expected 42P01")
        except psycopg.errors.UndefinedTable:
            pass
        assert conn.execute("SELECT 2").fetchone() == (2,)

# SQLAlchemy 2 on psycopg 3 (its connect runs TypeInfo.fetch inside a savepoint)
import sqlalchemy as sa

engine = sa.create_engine(f"postgresql+psycopg://admin@127.0.0.1:{port}/cohortdb")
with engine.connect() as sconn:
    assert sconn.execute(sa.text("SELECT 1")).scalar() == 1
    assert "contacts" in sa.inspect(sconn).get_table_names()
print("psycopg3 ok")
