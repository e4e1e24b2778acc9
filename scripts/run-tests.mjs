// `npm test`: vitest, then one plain closing line ("N passed, N failed, N skipped") for
// any CI reader, and in CI (CI=true) a skipped test fails the run: nothing that needs root
// may quietly not run there.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, mkdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'test', '.cache', 'results.json');
mkdirSync(dirname(out), { recursive: true });
rmSync(out, { force: true });
const r = spawnSync(process.execPath, [join(root, 'node_modules', 'vitest', 'vitest.mjs'), 'run', '--reporter=default', '--reporter=json', `--outputFile=${out}`, ...process.argv.slice(2)], { stdio: 'inherit', cwd: root });
if (!existsSync(out)) {
  console.log('0 passed, 1 failed');
  process.exit(r.status || 1);
}
const j = JSON.parse(readFileSync(out, 'utf8'));
const skipped = j.numPendingTests + j.numTodoTests;
console.log(`tests: ${j.numPassedTests} passed, ${j.numFailedTests} failed, ${skipped} skipped`);
if (process.env.CI === 'true' && skipped > 0) {
  console.error(`CI: ${skipped} test(s) skipped; in CI every test must run`);
  process.exit(1);
}
if (j.numTotalTests === 0) {
  console.error('no test ran');
  process.exit(1);
}
process.exit(r.status ?? 1);
