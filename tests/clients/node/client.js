// node-postgres against cohortdb: Parse/Bind/Describe/Execute, text parameters, row limits.
const { Client } = require('pg');

async function main() {
  const port = parseInt(process.env.COHORTDB_PORT, 10);
  const c = new Client({ host: '127.0.0.1', port, user: 'admin', database: 'cohortdb' });
  await c.connect();
  let r = await c.query('SELECT version() AS v');
  if (!r.rows[0].v.startsWith('PostgreSQL 16.')) throw new Error(r.rows[0].v);
  await c.query('INSERT INTO contacts (name, email) VALUES ($1, $2)', ['Dee', 'dee@example.com']);
  r = await c.query('SELECT name, email FROM contacts WHERE name = $1', ['Dee']);
  if (r.rows.length !== 1 || r.rows[0].email !== 'dee@example.com') throw new Error(JSON.stringify(r.rows));
  r = await c.query('SELECT $1::bigint + 1 AS n, $2::text AS t', [41, 'x']);
  if (r.rows[0].n !== '42' || r.rows[0].t !== 'x') throw new Error(JSON.stringify(r.rows));
  r = await c.query({ text: 'SELECT n FROM generate_series(1, 10) AS t(n)', rowMode: 'array' });
  if (r.rows.length !== 10) throw new Error('rows ' + r.rows.length);
  r = await c.query({ name: 'named', text: 'SELECT $1::int AS x', values: [5] });
  r = await c.query({ name: 'named', text: 'SELECT $1::int AS x', values: [6] });
  if (r.rows[0].x !== 6) throw new Error(JSON.stringify(r.rows));
  try {
    await c.query('SELECT * FROM nowhere');
    throw new Error('expected error');
  } catch (e) {
    if (e.code !== '42P01') throw e;
  }
  r = await c.query('SELECT 1 AS one');
  // an integer literal selected as a column is integer, as in PostgreSQL
  // (node-postgres returns int8 as a string, int4 as a number)
  if (r.rows[0].one !== 1) throw new Error(`SELECT 1 gave ${JSON.stringify(r.rows[0].one)}`);
  r = await c.query('SELECT 1');
  if (r.fields[0].name !== '?column?' || r.rows[0]['?column?'] !== 1) {
    throw new Error(`SELECT 1 gave ${JSON.stringify(r.fields)} ${JSON.stringify(r.rows)}`);
  }
  await c.end();
  console.log('node-postgres ok');
}
main().catch((e) => { console.error(e); process.exit(1); });
