"""SQLAlchemy 2 reflection against cohortdb (psycopg2 dialect).

What works is asserted; get_columns, get_pk_constraint, get_indexes and
get_schema_names do not yet (see docs/postgres-compatibility.md)."""
import os
import sqlalchemy as sa

port = int(os.environ["COHORTDB_PORT"])
engine = sa.create_engine(f"postgresql+psycopg2://admin@127.0.0.1:{port}/cohortdb")
with engine.connect() as conn:
    assert engine.dialect.server_version_info[0] == 16, engine.dialect.server_version_info
    insp = sa.inspect(conn)
    tables = insp.get_table_names()
    assert "contacts" in tables and "events" in tables, tables
    views = insp.get_view_names()
    assert sorted(views) == ["contact_view", "event_view"], views
    assert insp.has_table("contacts") and not insp.has_table("nope")
    assert insp.get_foreign_keys("contacts") == []
    t = sa.table("contacts", sa.column("id"), sa.column("name"))
    rows = conn.execute(sa.select(t.c.id, t.c.name).where(t.c.id > 0).limit(3)).fetchall()
    assert isinstance(rows, list)
print("sqlalchemy ok")
