// What node-postgres and postgres.js read back from a database: every column type of
// `orders`, typed parameters, command tags and row counts, a rolled-back transaction and
// errors' SQLSTATEs and fields. Prints one JSON object, so a run against freshet and one against
// PostgreSQL can be compared. node drivers.js <host> <port> <user>
const { Client } = require('pg');
const postgres = require('postgres');

const show = (rows) => JSON.parse(JSON.stringify(rows, (k, v) => {
  if (v && v.type === 'Buffer') return `bytes:${Buffer.from(v.data).toString('hex')}`;
  return v;
}));

async function nodePostgres(host, port, user) {
  const out = {};
  const c = new Client({ host, port: Number(port), user, database: 'freshet' });
  await c.connect();
  const all = await c.query('SELECT * FROM orders ORDER BY id');
  out.fields = all.fields.map((f) => `${f.name}:${f.dataTypeID}`);
  out.rows = show(all.rows);
  const p = await c.query(
    'SELECT id, amount, placed_tz FROM orders WHERE customer_id = $1 AND amount > $2 AND placed_tz > $3 AND paid = $4',
    [1, '1.5', new Date('2020-01-01T00:00:00Z'), true],
  );
  out.params = show(p.rows);
  const u = await c.query('SELECT id, ref FROM orders WHERE ref = $1', ['A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11']);
  out.uuid = show(u.rows);
  const typed = await c.query('SELECT $1::int + 1 AS n, $2::text AS t, $3::jsonb AS j, $4::timestamptz AS ts',
    [41, null, { k: [1, 2] }, '2026-11-01 10:00+02']);
  out.typed = show(typed.rows);
  await c.query('BEGIN');
  const ins = await c.query('INSERT INTO customers (id, name) VALUES ($1, $2), ($3, $4)', [70, 'x', 71, 'y']);
  const upd = await c.query('UPDATE customers SET note = $1 WHERE id >= $2', ['n', 70]);
  const del = await c.query('DELETE FROM customers WHERE id = $1', [71]);
  out.tags = [ins, upd, del].map((r) => `${r.command} ${r.rowCount}`);
  await c.query('ROLLBACK');
  out.afterRollback = (await c.query('SELECT count(*) AS n FROM customers WHERE id >= 70')).rows[0].n;
  try {
    await c.query('SELECT nope FROM orders');
  } catch (e) {
    out.error = e.code;
  }
  // An error's fields: what ORMs read to tell which constraint a write broke.
  const fields = (e) => [e.code, e.schema, e.table, e.column, e.constraint, e.detail];
  try {
    await c.query('INSERT INTO customers (id, name) VALUES (1, $1)', ['dup']);
  } catch (e) {
    out.duplicate = fields(e);
  }
  try {
    await c.query('INSERT INTO customers (id, name) VALUES (90, NULL)');
  } catch (e) {
    out.notNull = fields(e);
  }
  await c.end();
  return out;
}

async function postgresJs(host, port, user) {
  const out = {};
  const sql = postgres({ host, port: Number(port), user, database: 'freshet', onnotice: () => {} });
  const rows = await sql`SELECT id, amount, ratio, paid, placed, placed_tz, payload, tags, counts
                         FROM orders WHERE customer_id = ${1} ORDER BY id`;
  out.rows = show(rows.map((r) => ({ ...r })));
  out.count = rows.count;
  out.command = rows.command;
  const columns = rows.columns.map((c) => `${c.name}:${c.type}`);
  out.columns = columns;
  try {
    await sql.begin(async (tx) => {
      await tx`INSERT INTO customers (id, name) VALUES (${80}, ${'tx'})`;
      throw new Error('roll back');
    });
  } catch (e) {
    out.rolledBack = e.message;
  }
  out.afterRollback = (await sql`SELECT count(*)::int AS n FROM customers WHERE id = 80`)[0].n;
  const ins = await sql`INSERT INTO customers (id, name) VALUES (${81}, ${'kept'})`;
  out.insert = `${ins.command} ${ins.count}`;
  const del = await sql`DELETE FROM customers WHERE id = ${81}`;
  out.delete = `${del.command} ${del.count}`;
  try {
    await sql`SELECT 1/0 AS x`;
  } catch (e) {
    out.error = e.code;
  }
  const unsafe = await sql.unsafe('SELECT name FROM customers WHERE id = $1', [2]);
  out.unsafe = unsafe.map((r) => r.name);
  await sql.end();
  return out;
}

async function main() {
  const [host, port, user] = process.argv.slice(2);
  const out = { pg: await nodePostgres(host, port, user), postgresjs: await postgresJs(host, port, user) };
  console.log(JSON.stringify(out, null, 1));
}

main().catch((e) => { console.error(e); process.exit(1); });
