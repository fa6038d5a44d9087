// Logs in with node-postgres and prints current_user, or the SQLSTATE the login failed with.
// node login.js <host> <port> <user> <password>
const { Client } = require('pg');

async function main() {
  const [host, port, user, password] = process.argv.slice(2);
  const client = new Client({ host, port: Number(port), user, password, database: 'freshet' });
  try {
    await client.connect();
  } catch (e) {
    console.log(e.code || e.message);
    return;
  }
  const res = await client.query('SELECT current_user AS u');
  console.log(res.rows[0].u);
  await client.end();
}

main().catch((e) => { console.error(e); process.exit(1); });
