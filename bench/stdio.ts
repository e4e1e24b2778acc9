import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { planRun } from '../src/cli/run.js';
import { LocalStore } from '../src/image/local-store.js';
import { PROJECT_ROOT } from '../src/kernel/native.js';
import { attachAndWait, startContainer } from '../src/runtime/run.js';
import type { StdioMode } from '../src/runtime/stdio.js';
import { fmt, median, ratio } from './util.js';

// Issue 11 item 4: what relaying a foreground container's stdio through pipes costs
// (docs/stdio.md). Start-up: the library API with the relay against the old pass-through of
// tsrun's own fds (kept only for OCI create, so the difference is the relay alone).
// Throughput: 1 GiB through `cat` in a container, tsrun against runc's foreground mode
// (which relays through pipes too), and the same pipeline without a container as the floor.
export async function benchStdio(n: number, runs: number): Promise<string> {
  const base = mkdtempSync(join(tmpdir(), 'tsrun-bench-stdio-'));
  try {
    const paths = { root: join(base, 'run'), data: join(base, 'data') };
    const busybox = await new LocalStore(join(paths.data, 'images')).ensureBuiltin();
    const env = { ...process.env, TSRUN_ROOT: paths.root, TSRUN_DATA: paths.data };
    const bin = join(PROJECT_ROOT, 'bin', 'tsrun');

    // start-up, in one Node process: relay and pass take turns
    const start: Record<StdioMode, number[]> = { relay: [], pass: [] };
    for (let i = -3; i < n; i++) {
      for (const mode of ['relay', 'pass'] as const) {
        const t0 = process.hrtime.bigint();
        const plan = await planRun('busybox', ['true'], {}, paths);
        const code = await attachAndWait(plan, await startContainer({ plan, interactive: false, stdio: mode }));
        const ms = Number(process.hrtime.bigint() - t0) / 1e6;
        if (code !== 0) throw new Error(`library run (${mode}) exited ${code}`);
        if (i >= 0) start[mode].push(ms);
      }
    }

    // the same root filesystem as an OCI bundle for runc: `cat`, no terminal
    const bundle = join(base, 'bundle');
    cpSync(busybox.layers[0]!, join(bundle, 'rootfs'), { recursive: true, verbatimSymlinks: true });
    execFileSync('runc', ['spec'], { cwd: bundle });
    const spec = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8'));
    spec.process.args = ['cat'];
    spec.process.terminal = false;
    writeFileSync(join(bundle, 'config.json'), JSON.stringify(spec));
    const runcRoot = join(base, 'runc');

    const feed = 'head -c 1G /dev/zero';
    const lines: [string, string, (i: number) => string][] = [
      // (a `|` in a table cell is escaped, even in code)
      ['floor', `\`${feed} \\| cat > /dev/null\` (no container)`, () => `${feed} | cat > /dev/null`],
      ['tsrun', `\`${feed} \\| tsrun run -i --rm busybox cat > /dev/null\``, () => `${feed} | ${bin} run -i --rm busybox cat > /dev/null`],
      ['runc', `the same through \`runc run\` (foreground: runc relays through pipes too)`, (i) => `${feed} | runc --root ${runcRoot} run --bundle ${bundle} io-${process.pid}-${i} > /dev/null`],
      ['tsrun-pipe', `\`… \\| tsrun run -i --rm busybox cat \\| cat > /dev/null\` (tsrun's stdout a pipe)`, () => `${feed} | ${bin} run -i --rm busybox cat | cat > /dev/null`],
      ['runc-pipe', `the same through \`runc run\``, (i) => `${feed} | runc --root ${runcRoot} run --bundle ${bundle} iop-${process.pid}-${i} | cat > /dev/null`],
    ];
    const times = new Map<string, number[]>(lines.map(([k]) => [k, []]));
    for (let i = -1; i < runs; i++) {
      for (const [k, , cmd] of lines) {
        const t0 = process.hrtime.bigint();
        // pipefail: a failed container must not pass for a fast one
        const r = spawnSync('bash', ['-o', 'pipefail', '-c', cmd(i + 1)], { env, stdio: ['ignore', 'ignore', 'pipe'] });
        const ms = Number(process.hrtime.bigint() - t0) / 1e6;
        if (r.status !== 0) throw new Error(`${cmd(i + 1)} exited ${r.status}: ${r.stderr}`);
        if (i >= 0) times.get(k)!.push(ms);
      }
    }
    spawnSync('rm', ['-rf', runcRoot]);
    const m = (k: string) => median(times.get(k)!);
    const gibs = (ms: number) => `${(1024 / ms).toFixed(2)} GiB/s`;
    const relay = median(start.relay);
    const pass = median(start.pass);
    return [
      `### Stdio relay (issue 11 item 4, [stdio.md](stdio.md))`,
      '',
      `Start-up, library API in one Node process, \`busybox true\`, median of ${n} runs each, taking turns:`,
      '',
      '| container stdio | median | |',
      '|---|---|---|',
      `| pipes relayed by tsrun (foreground \`run\`, \`exec\`) | ${fmt(relay)} | ${relay >= pass ? '+' : '−'}${fmt(Math.abs(relay - pass))} |`,
      `| tsrun's own fds passed (OCI \`create\`, \`exec --detach\`) | ${fmt(pass)} | |`,
      '',
      `1 GiB through \`cat\` in a container, median of ${runs} runs after one warm-up, the command lines taking turns (wall time of the whole pipeline):`,
      '',
      '| pipeline | median | throughput | vs runc |',
      '|---|---|---|---|',
      ...lines.map(([k, label]) => {
        const peer = k === 'tsrun' ? 'runc' : k === 'tsrun-pipe' ? 'runc-pipe' : undefined;
        return `| ${label} | ${fmt(m(k))} | ${gibs(m(k))} | ${peer ? ratio(m(k), m(peer)) + ' of runc' : ''} |`;
      }),
      '',
      `All runs (ms): ${lines.map(([k]) => `${k} ${times.get(k)!.map((x) => x.toFixed(0)).join(', ')}`).join('; ')}.`,
      '',
    ].join('\n');
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
}
