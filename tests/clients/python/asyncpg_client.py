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
