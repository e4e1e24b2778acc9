// The cgroup manager against this machine's real kernel (hybrid: v1 controllers), with
// ordinary `sh` children spawned by node and joined before they start their workload.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CGROUP_PARENT_ANNOTATION } from '../../src/controls/cgroups/flags.js';
import { CgroupManager, setFrozen, wasOomKilled } from '../../src/controls/cgroups/manager.js';
import { hostLayout } from '../../src/controls/cgroups/mode.js';
import type { Resources, Spec } from '../../src/spec/types.js';

const isRoot = process.getuid?.() === 0;
const PARENT = `/tsrun-test-${process.pid}`;

function spec(resources: Resources): Spec {
  return {
    ociVersion: '1.2.0',
    process: { user: { uid: 0, gid: 0 }, args: ['sh'], cwd: '/' },
    root: { path: 'rootfs' },
    annotations: { [CGROUP_PARENT_ANNOTATION]: PARENT },
    linux: { namespaces: [], resources },
  };
}

interface Running {
  m: CgroupManager;
  child: ChildProcess;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}
const live: Running[] = [];

/** Spawns `sh` that waits on stdin, joins it to a fresh cgroup, then lets it run `workload`. */
function start(name: string, resources: Resources, workload: string): Running {
  const m = new CgroupManager(spec(resources), `${name}-${process.pid}`);
  m.create();
  const child = spawn('sh', ['-c', 'read _ && exec sh -c "$0"', workload], { stdio: ['pipe', 'pipe', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  child.stdout!.resume();
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  m.join(child.pid!);
  child.stdin!.write('go\n');
  const r = { m, child, stderr: () => err, exited };
  live.push(r);
  return r;
}

const read = (p: string): string => readFileSync(p, 'utf8');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe.skipIf(!isRoot && process.env.CI !== 'true')('cgroup manager on the host kernel', () => {
  beforeAll(() => {
    if (!isRoot) throw new Error('these tests need root (they create cgroups)');
  });
  afterEach(async () => {
    for (const r of live.splice(0)) {
      r.m.destroy();
      await r.exited;
    }
  });
  afterAll(() => {
    for (const h of hostLayout().v1.filter((x) => x.controllers.length)) {
      try {
        rmdirSync(join(h.mountPoint, PARENT));
      } catch {
        // not created in this hierarchy
      }
    }
    if (hostLayout().unified) {
      try {
        rmdirSync(join(hostLayout().unified!.mountPoint, PARENT));
      } catch {
        // idem
      }
    }
  });

  it('detects this host\'s mode', () => {
    const l = hostLayout();
    expect(['v1', 'v2', 'hybrid']).toContain(l.mode);
    for (const c of ['pids', 'memory', 'cpu', 'cpuset']) expect(l.controllers[c], c).toBeDefined();
  });

  it('holds a fork bomb at --pids-limit 50, the host stays responsive, nothing is left', async () => {
    const r = start('bomb', { pids: { limit: 50 } }, 'b() { b | b & }; b; sleep 30');
    const pidsDir = r.m.dirFor('pids')!;
    let max = 0;
    const t0 = Date.now();
    while (Date.now() - t0 < 1500) {
      max = Math.max(max, Number(read(join(pidsDir, 'pids.current'))));
      await sleep(20);
    }
    const events = read(join(pidsDir, 'pids.events'));
    const refused = Number(/max (\d+)/.exec(events)?.[1] ?? 0);
    // the host can still start a process while the bomb runs
    const h0 = Date.now();
    expect(spawnSync('true').status).toBe(0);
    const hostMs = Date.now() - h0;
    console.log(`fork bomb: pids.current peak ${max}, pids.events max ${refused}, host spawn ${hostMs} ms`);
    expect(max).toBeGreaterThan(10);
    expect(max).toBeLessThanOrEqual(50);
    expect(refused).toBeGreaterThan(0);
    expect(hostMs).toBeLessThan(2000);
    expect(r.stderr()).toMatch(/[Cc]an(no|')t fork|Resource temporarily unavailable/);
    const d0 = Date.now();
    r.m.destroy();
    console.log(`fork bomb cleanup: ${Date.now() - d0} ms`);
    for (const t of r.m.targets) expect(existsSync(t.dir), t.dir).toBe(false);
    await r.exited;
  });

  it('OOM-kills a memory hog under -m 32m and reports it', async () => {
    const r = start('oom', { memory: { limit: 32 * 1024 * 1024, swap: 32 * 1024 * 1024 } }, 'x=aaaaaaaa; while :; do x=$x$x; done');
    const dir = r.m.dirFor('memory')!;
    const { code, signal } = await Promise.race([r.exited, sleep(15000).then(() => ({ code: -1, signal: null }))]);
    expect(signal).toBe('SIGKILL');
    expect(code).toBeNull();
    expect(wasOomKilled(r.m)).toBe(true);
    const max = Number(read(join(dir, r.m.layout.controllers['memory']!.version === 1 ? 'memory.max_usage_in_bytes' : 'memory.peak')));
    console.log(`oom: peak ${max} bytes, oom_control: ${read(join(dir, 'memory.oom_control')).replace(/\n/g, ' ')}`);
    expect(max).toBeLessThanOrEqual(32 * 1024 * 1024);
  });

  it('a container that was not OOM-killed is not reported as such', async () => {
    const r = start('nooom', { memory: { limit: 32 * 1024 * 1024 } }, 'exit 0');
    expect((await r.exited).code).toBe(0);
    expect(wasOomKilled(r.m)).toBe(false);
  });

  it('--cpus 0.5 writes quota/period and a busy loop gets throttled', async () => {
    const r = start('cpu', { cpu: { quota: 50000, period: 100000 } }, 'while :; do :; done');
    const cpuDir = r.m.dirFor('cpu')!;
    const v1 = r.m.layout.controllers['cpu']!.version === 1;
    if (v1) {
      expect(read(join(cpuDir, 'cpu.cfs_quota_us')).trim()).toBe('50000');
      expect(read(join(cpuDir, 'cpu.cfs_period_us')).trim()).toBe('100000');
    } else expect(read(join(cpuDir, 'cpu.max')).trim()).toBe('50000 100000');
    const usage = (): number => (v1 ? Number(read(join(r.m.dirFor('cpuacct')!, 'cpuacct.usage'))) : Number(/usage_usec (\d+)/.exec(read(join(cpuDir, 'cpu.stat')))![1]) * 1000);
    const u0 = usage();
    const t0 = process.hrtime.bigint();
    await sleep(1200);
    const used = (usage() - u0) / Number(process.hrtime.bigint() - t0);
    const stat = read(join(cpuDir, 'cpu.stat'));
    const throttled = Number(/nr_throttled (\d+)/.exec(stat)?.[1]);
    console.log(`cpu: ${(used * 100).toFixed(1)}% of one CPU, nr_throttled ${throttled}`);
    expect(throttled).toBeGreaterThan(3);
    expect(used).toBeGreaterThan(0.3);
    expect(used).toBeLessThan(0.65);
  });

  it('--cpuset-cpus pins the processes', async () => {
    const r = start('cpuset', { cpu: { cpus: '1' } }, 'grep Cpus_allowed_list /proc/self/status');
    let out = '';
    r.child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    expect((await r.exited).code).toBe(0);
    expect(out.trim()).toMatch(/^Cpus_allowed_list:\s+1$/);
    expect(read(join(r.m.dirFor('cpuset')!, 'cpuset.cpus')).trim()).toBe('1');
  });

  it('removes the cgroup after its main process was SIGKILLed, leaving no process', async () => {
    const r = start('kill', { pids: { limit: 20 } }, 'sleep 60 & sleep 60 & sleep 60');
    await sleep(200);
    const pids = read(join(r.m.dirFor('pids')!, 'cgroup.procs')).split('\n').filter(Boolean).map(Number);
    expect(pids.length).toBeGreaterThanOrEqual(3);
    r.child.kill('SIGKILL');
    await r.exited;
    // the orphans are still inside
    expect(read(join(r.m.dirFor('pids')!, 'cgroup.procs')).trim()).not.toBe('');
    r.m.destroy();
    for (const t of r.m.targets) expect(existsSync(t.dir)).toBe(false);
    await sleep(50);
    for (const pid of pids) {
      const stat = existsSync(`/proc/${pid}/stat`) ? read(`/proc/${pid}/stat`) : '';
      // gone, or a zombie waiting for its reaper
      expect(stat === '' || / Z /.test(stat), `pid ${pid}: ${stat}`).toBe(true);
    }
  });

  it('freezes and thaws the whole group (pause/unpause)', async () => {
    const r = start('pause', {}, 'while :; do :; done');
    const v1 = r.m.layout.controllers['cpu']!.version === 1;
    const usage = (): number => (v1 ? Number(read(join(r.m.dirFor('cpuacct')!, 'cpuacct.usage'))) : Number(/usage_usec (\d+)/.exec(read(join(r.m.dirFor('cpu')!, 'cpu.stat')))![1]) * 1000);
    await sleep(100);
    setFrozen(r.m.targets, true);
    const u0 = usage();
    await sleep(300);
    const frozenNs = usage() - u0;
    setFrozen(r.m.targets, false);
    const u1 = usage();
    await sleep(300);
    const thawedNs = usage() - u1;
    console.log(`frozen: ${frozenNs} ns of CPU in 300 ms; thawed: ${thawedNs} ns`);
    expect(frozenNs).toBeLessThan(5_000_000);
    expect(thawedNs).toBeGreaterThan(100_000_000);
  });

  it('refuses a cpuset write the kernel rejects and leaves nothing behind', () => {
    const m = new CgroupManager(spec({ cpu: { cpus: '7' } }), `bad-${process.pid}`);
    expect(() => m.create()).toThrow(/cpuset\.cpus: (ERANGE|EINVAL)/);
    for (const t of m.targets) expect(existsSync(t.dir)).toBe(false);
  });
});
