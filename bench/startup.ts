import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { planRun } from '../src/cli/run.js';
import { LocalStore } from '../src/image/local-store.js';
import { PROJECT_ROOT } from '../src/kernel/native.js';
import { attachAndWait, startContainer } from '../src/runtime/run.js';
import { fmt, median, ratio, timeCommand } from './util.js';

// Issue 2's benchmark: start-up of `tsrun run --rm busybox true` against `runc run` of the
// same root filesystem and against `node -e 0` (Node's own start-up, which the CLI pays
// before tsrun does anything); and the library API (containers started one after another
// from one Node process) against sequential `runc run`.
export async function benchStartup(n: number): Promise<string> {
  const base = mkdtempSync(join(tmpdir(), 'tsrun-bench-'));
  try {
    const paths = { root: join(base, 'run'), data: join(base, 'data') };
    const store = new LocalStore(join(paths.data, 'images'));
    const busybox = await store.ensureBuiltin();
    const env = { ...process.env, TSRUN_ROOT: paths.root, TSRUN_DATA: paths.data };
    const bin = join(PROJECT_ROOT, 'bin', 'tsrun');

    // the same root filesystem as an OCI bundle for runc, with runc's default config
    const bundle = join(base, 'bundle');
    cpSync(busybox.layers[0]!, join(bundle, 'rootfs'), { recursive: true, verbatimSymlinks: true });
    execFileSync('runc', ['spec'], { cwd: bundle });
    const spec = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8'));
    spec.process.args = ['true'];
    spec.process.terminal = false;
    writeFileSync(join(bundle, 'config.json'), JSON.stringify(spec));
    const runcRoot = join(base, 'runc');

    const warm = 3;
    const series = (f: (i: number) => number) => {
      for (let i = 0; i < warm; i++) f(-1 - i);
      return Array.from({ length: n }, (_, i) => f(i));
    };
    const node = median(series(() => timeCommand(process.execPath, ['-e', '0'])));
    const tsrun = median(series(() => timeCommand(bin, ['run', '--rm', 'busybox', 'true'], env)));
    const runc = median(series((i) => timeCommand('runc', ['--root', runcRoot, 'run', '--bundle', bundle, `bench-${process.pid}-${i + warm}`])));

    // library API: one Node process, containers one after another
    const lib: number[] = [];
    for (let i = -warm; i < n; i++) {
      const t0 = process.hrtime.bigint();
      const plan = await planRun('busybox', ['true'], {}, paths);
      const code = await attachAndWait(plan, await startContainer({ plan, interactive: false }));
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (code !== 0) throw new Error(`library run exited ${code}`);
      if (i >= 0) lib.push(ms);
    }
    const library = median(lib);
    spawnSync('rm', ['-rf', runcRoot]);

    return [
      `### Start-up (median of ${n} runs after ${warm} warm-up runs)`,
      '',
      '| what | median | ratio |',
      '|---|---|---|',
      `| \`node -e 0\` (Node's own start-up) | ${fmt(node)} | 1.00× |`,
      `| \`runc run\` of the busybox bundle, \`true\` | ${fmt(runc)} | ${ratio(runc, node)} of node |`,
      `| \`tsrun run --rm busybox true\` | ${fmt(tsrun)} | ${ratio(tsrun, runc)} of runc |`,
      `| tsrun's own work above Node's start-up | ${fmt(tsrun - node)} | target ≤ 15 ms |`,
      `| library API, per container, one Node process | ${fmt(library)} | ${ratio(runc, library)} faster than sequential runc (target ≥ 2×) |`,
      '',
    ].join('\n');
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
}
