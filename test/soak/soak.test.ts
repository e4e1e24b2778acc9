import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { BIN, describeKernel, testEnv, tsrun, tsrunEnvVars } from '../kernel/helpers.js';

// The soak suite (issue 12): many cycles of every verb, the CLI SIGKILLed at random points,
// prune racing with starts, and a snapshot of what the host holds (mounts, cgroups,
// processes, network namespaces, links, files) compared before and after. `npm test` runs
// it short (CI); `npm run soak` runs it full (SOAK=full) and prints the figures that
// docs/performance.md quotes.

const FULL = process.env.SOAK === 'full';
const N = FULL
  ? { sequential: 1000, detached: 200, concurrent: 100, kills: 200, pruneRuns: 100, pruneDetached: 40 }
  : { sequential: 20, detached: 10, concurrent: 10, kills: 24, pruneRuns: 20, pruneDetached: 6 };
const TIMEOUT = FULL ? 3_600_000 : 180_000;

const HEX64 = /[0-9a-f]{64}/;

/** What the host holds that a container could leave behind. */
function snapshot(): Record<string, string[]> {
  const e = testEnv();
  const cgroups: string[] = [];
  // /sys/fs/cgroup/<controller>/… (v1, hybrid) or /sys/fs/cgroup/… (v2): descend only into
  // tsrun's subtrees; a container's own cgroup carries its id (tsrun's shared parents may
  // stay, as docker's /docker does)
  const walk = (dir: string, depth: number, inside: boolean) => {
    if (depth > 6) return;
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const d of entries) {
      if (!d.isDirectory()) continue;
      const p = join(dir, d.name);
      const mine = inside || d.name.includes('tsrun');
      if (mine && HEX64.test(d.name)) cgroups.push(p);
      if (mine || depth === 0) walk(p, depth + 1, mine);
    }
  };
  walk('/sys/fs/cgroup', 0, false);
  // processes of this test environment: monitors name its directories, and a container's
  // processes see its overlay (upperdir under the data root) in their mount table
  const procs: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      const candidate = cmd.startsWith('tsrun-init') || cmd.includes('tsrun-monitor') || readFileSync(`/proc/${pid}/cgroup`, 'utf8').includes('tsrun');
      if (candidate && (cmd.includes(e.base) || readFileSync(`/proc/${pid}/mountinfo`, 'utf8').includes(e.base))) procs.push(`${pid} ${cmd.replaceAll('\0', ' ').trim()}`);
    } catch {
      /* exited, or a kernel thread */
    }
  }
  const lines = (cmd: string, args: string[]) => spawnSync(cmd, args, { encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
  const dirs = (d: string) => (existsSync(d) ? readdirSync(d).sort() : []);
  return {
    mounts: readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(e.base) || l.includes('tsrun')).map((l) => l.split(' ').slice(3, 5).join(' ')),
    cgroups: cgroups.sort(),
    processes: procs.sort(),
    netns: lines('ip', ['netns', 'list']),
    links: lines('ip', ['-o', 'link', 'show']).map((l) => l.split(':')[1]!.trim().split('@')[0]!).sort(),
    state: dirs(e.root).filter((d) => HEX64.test(d)),
    containers: dirs(join(e.data, 'containers')),
  };
}

/**
 * What `after` holds that `before` did not. Only additions are leaks: other work on the host
 * may remove its own things meanwhile. A monitor that is still writing its last exit record
 * is given a few seconds to end; what is still there then has leaked.
 */
async function leakedSince(before: Record<string, string[]>): Promise<Record<string, string[]>> {
  let added: Record<string, string[]> = {};
  for (let i = 0; i < 50; i++) {
    const after = snapshot();
    added = Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v.filter((x) => !before[k]!.includes(x))]));
    if (Object.values(added).every((v) => v.length === 0)) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return added;
}

const NOTHING = { mounts: [], cgroups: [], processes: [], netns: [], links: [], state: [], containers: [] };

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(args: string[], killAfterMs?: number): Promise<Ran> {
  return new Promise((resolve) => {
    const child = spawn(BIN, args, { env: tsrunEnvVars(), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    const timer = killAfterMs !== undefined ? setTimeout(() => child.kill('SIGKILL'), killAfterMs) : undefined;
    child.on('close', (code) => {
      if (timer) clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const figures: string[] = [];
async function timed<T>(name: string, count: number, fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  const r = await fn();
  const ms = performance.now() - t0;
  figures.push(`${name}: ${count} in ${(ms / 1000).toFixed(1)} s (${(ms / count).toFixed(1)} ms each)`);
  return r;
}

/** rm -f of everything, then prune: what a user does to get back to nothing. */
function clearAll(): void {
  for (const c of JSON.parse(tsrun(['ps', '-a', '--format', 'json']).stdout || '[]')) tsrun(['rm', '-f', c.id]);
  tsrun(['system', 'prune']);
}

describeKernel(`soak (${FULL ? 'full' : 'short'}): cycles, concurrency, SIGKILL of every verb, prune races; the host is as before`, () => {
  let before: Record<string, string[]>;

  afterAll(() => {
    const cpu = cpus()[0]?.model ?? 'unknown CPU';
    const text = `soak (${FULL ? 'full' : 'short'}), ${cpu}, ${cpus().length} cores\n${figures.map((f) => `  ${f}`).join('\n')}\n`;
    process.stdout.write(text);
    if (FULL) writeFileSync(join(import.meta.dirname, '..', '.cache', 'soak-figures.txt'), text);
  });

  it('takes the host snapshot', () => {
    clearAll();
    before = snapshot();
    expect(before.state).toEqual([]);
  });

  it(`${N.sequential} sequential run --rm`, { timeout: TIMEOUT }, async () => {
    const bad = await timed('sequential run --rm busybox true', N.sequential, async () => {
      const failed: Ran[] = [];
      for (let i = 0; i < N.sequential; i++) {
        const r = await run(['run', '--rm', 'busybox', 'true']);
        if (r.code !== 0) failed.push(r);
      }
      return failed;
    });
    expect(bad).toEqual([]);
  });

  it(`${N.detached} detached run/rm cycles`, { timeout: TIMEOUT }, async () => {
    const bad = await timed('run -d + rm -f', N.detached, async () => {
      const failed: string[] = [];
      for (let i = 0; i < N.detached; i++) {
        const r = await run(['run', '-d', 'busybox', 'sleep', '60']);
        if (r.code !== 0) failed.push(`run: ${r.stderr}`);
        const rm = await run(['rm', '-f', r.stdout.trim()]);
        if (rm.code !== 0) failed.push(`rm: ${rm.stderr}`);
      }
      return failed;
    });
    expect(bad).toEqual([]);
  });

  it(`${N.concurrent} concurrent runs`, { timeout: TIMEOUT }, async () => {
    const results = await timed('concurrent run --rm busybox echo ok', N.concurrent, () => Promise.all(Array.from({ length: N.concurrent }, () => run(['run', '--rm', 'busybox', 'echo', 'ok']))));
    expect(results.filter((r) => r.code !== 0 || r.stdout !== 'ok\n')).toEqual([]);
  });

  it(`the CLI SIGKILLed at random points of every verb (${N.kills} kills); rm -f and prune recover everything`, { timeout: TIMEOUT }, async () => {
    const verbs: ((target: string) => string[])[] = [
      () => ['run', '--rm', 'busybox', 'sleep', '0.2'],
      () => ['run', 'busybox', 'true'],
      () => ['run', '-d', 'busybox', 'sleep', '30'],
      () => ['run', '-d', '--rm', 'busybox', 'sleep', '0.1'],
      (t) => ['exec', t, 'true'],
      (t) => ['stop', '-t', '1', t],
      (t) => ['kill', t],
      (t) => ['rm', '-f', t],
      (t) => ['logs', t],
      (t) => ['inspect', t],
      (t) => ['pause', t],
      () => ['ps', '-a'],
      () => ['system', 'prune'],
    ];
    let rounds = 0;
    await timed('SIGKILL of the CLI at a random point', N.kills, async () => {
      while (rounds < N.kills) {
        const target = (await run(['run', '-d', 'busybox', 'sleep', '30'])).stdout.trim();
        const batch = verbs.slice(0, Math.min(verbs.length, N.kills - rounds));
        // every verb at once against the same container, each killed somewhere in its life
        await Promise.all(batch.map((v) => run(v(target), Math.floor(Math.random() * 150))));
        rounds += batch.length;
      }
    });
    clearAll();
    expect(await leakedSince(before)).toEqual(NOTHING);
  });

  it(`system prune in a loop beside ${N.pruneRuns} starting and ${N.pruneDetached} detached containers: none is harmed`, { timeout: TIMEOUT }, async () => {
    let pruning = true;
    const pruner = (async () => {
      let n = 0;
      while (pruning) {
        await run(['system', 'prune']);
        n++;
      }
      return n;
    })();
    const runs = await timed('run --rm beside a prune loop', N.pruneRuns, () => Promise.all(Array.from({ length: N.pruneRuns }, (_, i) => new Promise<Ran>((r) => setTimeout(r, i * 20)).then(() => run(['run', '--rm', 'busybox', 'echo', 'ok'])))));
    const detached = await Promise.all(Array.from({ length: N.pruneDetached }, () => run(['run', '-d', 'busybox', 'sleep', '30'])));
    await new Promise((r) => setTimeout(r, 500));
    pruning = false;
    const prunes = await pruner;
    figures.push(`prune loop: ${prunes} prunes beside the runs`);
    expect(runs.filter((r) => r.code !== 0 || r.stdout !== 'ok\n').map((r) => r.stderr)).toEqual([]);
    expect(detached.filter((r) => r.code !== 0).map((r) => r.stderr)).toEqual([]);
    const running = JSON.parse(tsrun(['ps', '--format', 'json']).stdout) as { id: string; status: string }[];
    expect(detached.map((r) => r.stdout.trim()).filter((id) => !running.some((c) => c.id === id && c.status === 'running'))).toEqual([]);
  });

  it('after rm -f and prune, the host holds nothing it did not hold before', async () => {
    clearAll();
    expect(await leakedSince(before)).toEqual(NOTHING);
  });
});
