"""asyncpg against cohortdb: Parse/Describe, binary codecs, type introspection, pool reset."""
import os, asyncio, datetime
import asyncpg

port = int(os.environ["COHORTDB_PORT"])

async def main():
    conn = await asyncpg.connect(host="127.0.0.1", port=port, user="admin", database="cohortdb")
    v = await conn.fetchval("SELECT version()")
    assert v.startswith("PostgreSQL 16."), v
    await conn.execute("INSERT INTO contacts (name, email) VALUES ($1, $2)", "Cy", "cy@example.com")
    row = await conn.fetchrow("SELECT id, name, email, created_at FROM contacts WHERE name = $1", "Cy")
    assert row["name"] == "Cy" and isinstance(row["created_at"], datetime.datetime), row
    r = await conn.fetchrow("SELECT $1::bigint + 1 AS a, $2::float8 AS b, $3::bool AS c, $4::date AS d",
                            41, 2.5, True, datetime.date(2025, 6, 1))
    assert (r["a"], r["b"], r["c"], r["d"]) == (42, 2.5, True, datetime.date(2025, 6, 1)), r
    r = await conn.fetchval("SELECT ARRAY['a','b']")
    assert list(r) == ["a", "b"], r
    stmt = await conn.prepare("SELECT name FROM contacts WHERE id > $1 ORDER BY id")
    assert len(await stmt.fetch(0)) >= 1
    # bound parameters in CALL and identity-keyed INSERT: asyncpg sends no
    # types and encodes each value as Describe says (binary)
    await conn.execute("ALTER TABLE events ADD COLUMN IF NOT EXISTS p_amount DOUBLE")
    cid, created = await conn.fetchrow("CALL identify($1, $2, $3)", "wxapp_shop", "apg-user",
                                       '{"name": "Ann"}')
    assert created and cid > 0, (cid, created)
    await conn.execute("INSERT INTO events (external_id, channel_id, event, event_date, p_amount) "
                       "VALUES ($1, $2, $3, $4, $5)", "apg-user", "wxapp_shop", "custom_order",
                       datetime.datetime(2025, 6, 2, 8, 30, tzinfo=datetime.timezone.utc), 3.25)
    r = await conn.fetchrow("SELECT contact_id, event_date, p_amount FROM events WHERE contact_id = $1", cid)
    assert (r["contact_id"], r["event_date"], r["p_amount"]) == (
        cid, datetime.datetime(2025, 6, 2, 8, 30, tzinfo=datetime.timezone.utc), 3.25), r
    other = (await conn.fetchrow("CALL identify($1, $2)", "wxapp_shop", "apg-other"))["contact_id"]
    await conn.execute("CALL merge_contacts($1, $2)", cid, other)
    pairs = await conn.fetch("CALL dedupe_contacts($1)", True)
    assert isinstance(pairs, list), pairs
    await conn.execute("CALL set_dedupe_rule($1, $2)", "any", ["email"])
    new_id = await conn.fetchval("INSERT INTO contacts (name) VALUES ($1) RETURNING id", "Ret")
    assert await conn.fetchval("SELECT name FROM contacts WHERE id = $1", new_id) == "Ret"
    try:
        await conn.fetch("SELECT * FROM nowhere")
        raise SystemExit("expected an error")
    except asyncpg.PostgresError as e:
        assert e.sqlstate == "42P01", e.sqlstate
    await conn.close()
    pool = await asyncpg.create_pool(host="127.0.0.1", port=port, user="admin",
                                     database="cohortdb", min_size=1, max_size=2)
    async with pool.acquire() as c:
        assert await c.fetchval("SELECT 1") == 1
    async with pool.acquire() as c:  # reset ran in between
        assert await c.fetchval("SELECT 2") == 2
    await pool.close()

asyncio.run(main())
print("asyncpg ok")
