"""SQLAlchemy 2 reflection against cohortdb (psycopg2 dialect): table and
view names, columns with their types, the primary key, indexes, schemas,
foreign keys, and a Table reflected with autoload_with used in a Core select."""
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
    assert "public" in insp.get_schema_names(), insp.get_schema_names()

    cols = {c["name"]: c for c in insp.get_columns("contacts")}
    assert isinstance(cols["id"]["type"], sa.BigInteger), cols["id"]
    assert isinstance(cols["name"]["type"], (sa.String, sa.Text)), cols["name"]
    created = cols["created_at"]["type"]
    assert isinstance(created, sa.TIMESTAMP) and created.timezone, created
    assert list(cols)[0] == "id", list(cols)

    vcols = [c["name"] for c in insp.get_columns("contact_view")]
    assert "id" in vcols and "name" in vcols, vcols

    pk = insp.get_pk_constraint("contacts")
    assert pk["constrained_columns"] == ["id"] and pk["name"] == "contacts_pkey", pk
    assert insp.get_indexes("contacts") == [], insp.get_indexes("contacts")

    t = sa.Table("contacts", sa.MetaData(), autoload_with=conn)
    assert t.c.id.primary_key and isinstance(t.c.created_at.type, sa.TIMESTAMP), t.c
    rows = conn.execute(sa.select(t.c.id, t.c.name).where(t.c.id > 0).order_by(t.c.id).limit(3)).fetchall()
    assert isinstance(rows, list)
print("sqlalchemy ok")
