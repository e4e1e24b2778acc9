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
    // the command lines take turns, so a busy spell of a shared machine hits all of them
    const commands: [string, string, string[], NodeJS.ProcessEnv?][] = [
      ['node', process.execPath, ['-e', '0']],
      ['tsrun', bin, ['run', '--rm', 'busybox', 'true'], env],
      ['plain', bin, ['run', '--rm', 'busybox', 'true'], { ...env, TSRUN_NO_SNAPSHOT: '1' }],
      ['version', bin, ['--version'], env],
      ['runc', 'runc', ['--root', runcRoot, 'run', '--bundle', bundle, '']],
    ];
    const times = new Map<string, number[]>(commands.map(([k]) => [k, []]));
    // library API: containers one after another from this Node process, in the same turns
    const lib: number[] = [];
    for (let i = -warm; i < n; i++) {
      for (const [k, cmd, args, e] of commands) {
        const a = k === 'runc' ? [...args.slice(0, -1), `bench-${process.pid}-${i + warm}`] : args;
        const ms = timeCommand(cmd, a, e);
        if (i >= 0) times.get(k)!.push(ms);
      }
      const t0 = process.hrtime.bigint();
      const plan = await planRun('busybox', ['true'], {}, paths);
      const code = await attachAndWait(plan, await startContainer({ plan, interactive: false }));
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (code !== 0) throw new Error(`library run exited ${code}`);
      if (i >= 0) lib.push(ms);
    }
    const [node, tsrun, plain, version, runc] = ['node', 'tsrun', 'plain', 'version', 'runc'].map((k) => median(times.get(k)!)) as [number, number, number, number, number];
    const library = median(lib);
    spawnSync('rm', ['-rf', runcRoot]);

    return [
      `### Start-up (median of ${n} runs after ${warm} warm-up runs, the command lines taking turns)`,
      '',
      '| what | median | ratio |',
      '|---|---|---|',
      `| \`node -e 0\` (Node's own start-up) | ${fmt(node)} | 1.00× |`,
      `| \`runc run\` of the busybox bundle, \`true\` | ${fmt(runc)} | ${ratio(runc, node)} of node |`,
      `| \`tsrun run --rm busybox true\` (bin/tsrun: node from the start-up snapshot) | ${fmt(tsrun)} | ${ratio(tsrun, runc)} of runc |`,
      `| the same with \`TSRUN_NO_SNAPSHOT=1\` (plain bundle) | ${fmt(plain)} | ${ratio(plain, tsrun)} of the snapshot's |`,
      `| \`tsrun --version\` (start-up from the snapshot, no work) | ${fmt(version)} | +${fmt(version - node)} over node |`,
      `| tsrun's own work above Node's start-up | ${fmt(tsrun - node)} | target ≤ 15 ms |`,
      `| library API, per container, one Node process | ${fmt(library)} | ${ratio(runc, library)} faster than sequential runc (target ≥ 2×) |`,
      '',
    ].join('\n');
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
}
