// Rule 5 of the trust boundary for cgroups: tsrun kills and removes only the cgroups it
// created for a container in its own state root. A bundle's linux.cgroupsPath may name a
// cgroup that already holds someone else's processes (canaries here); two state roots may
// reuse a container id; `stats` must not reach across roots.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, expect, it } from 'vitest';
import { hostLayout } from '../../src/controls/cgroups/mode.js';
import { BIN, describeKernel, leaks, probeBundle, testEnv, tsrun, tsrunEnvVars } from './helpers.js';

const CANARY = `/tsrun-test-canary-${process.pid}`;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function hierarchies() {
  const l = hostLayout();
  return [...l.v1.filter((h) => h.controllers.length), ...(l.unified ? [l.unified] : [])];
}
const canaryDirs = (): string[] => hierarchies().map((h) => join(h.mountPoint, CANARY));

/** A bundle of the probe image (busybox + /probe) running `args`. */
function bundle(args: string[], linux: Record<string, unknown> = {}): string {
  return probeBundle(mkdtempSync(join(tmpdir(), 'tsrun-cgown-')), args, { linux });
}

/** The state of a pid from /proc (Z = killed and not yet reaped), or undefined when gone. */
function procState(pid: number): string | undefined {
  try {
    return /^\d+ \(.*\) (\S)/.exec(readFileSync(`/proc/${pid}/stat`, 'utf8'))?.[1];
  } catch {
    return undefined;
  }
}
const aliveNotZombie = (pid: number): boolean => {
  const s = procState(pid);
  return s !== undefined && s !== 'Z';
};

/** OCI create: the container holds the caller's stdio, so spawnSync must not wait on pipes. */
function ociCreate(root: string[], dir: string, id: string): number | null {
  return spawnSync(BIN, [...root, 'create', '--bundle', dir, id], { env: tsrunEnvVars(), stdio: 'ignore', timeout: 30_000 }).status;
}

function ociPid(root: string[], id: string): number {
  const r = tsrun([...root, 'state', id]);
  expect(r.code, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as { pid: number }).pid;
}

describeKernel('cgroup ownership: tsrun destroys only the cgroups it created', () => {
  let canary: ChildProcess;
  const dirs: string[] = [];

  // a fresh canary for every test: someone else's cgroup, in every hierarchy tsrun would
  // use, with a process in it (re-made when an old build removed it)
  beforeEach(() => {
    for (const d of canaryDirs()) {
      if (existsSync(d)) continue;
      mkdirSync(d);
      // a new v1 cpuset has no CPUs until given some (cpuset(7))
      for (const f of ['cpuset.cpus', 'cpuset.mems']) {
        if (existsSync(join(d, f))) writeFileSync(join(d, f), readFileSync(join(d, '..', f), 'utf8').trim());
      }
    }
    canary = spawn('sleep', ['600'], { stdio: 'ignore' });
    for (const d of canaryDirs()) writeFileSync(join(d, 'cgroup.procs'), String(canary.pid));
  });

  afterEach(async () => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
    canary.kill('SIGKILL');
    await new Promise((r) => (canary.exitCode !== null || canary.signalCode !== null ? r(undefined) : canary.on('exit', r)));
  });

  afterAll(async () => {
    for (let i = 0; i < 50 && canaryDirs().some(existsSync); i++) {
      for (const d of canaryDirs()) {
        // only this file's processes are in its canary: the sleeps and containers it started
        // (a container's child survives delete when a test fails)
        for (const pid of existsSync(d) ? readFileSync(join(d, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean) : []) {
          try {
            process.kill(Number(pid), 'SIGKILL');
          } catch {
            /* gone */
          }
        }
        try {
          rmdirSync(d);
        } catch {
          /* EBUSY for a moment after the kill */
        }
      }
      await sleep(20);
    }
    expect(canaryDirs().filter(existsSync)).toEqual([]);
    expect(leaks().filter((l) => !l.startsWith('process:'))).toEqual([]);
  });

  function expectCanaryUnharmed(): void {
    expect(aliveNotZombie(canary.pid!), `canary pid ${canary.pid} is ${procState(canary.pid!) ?? 'gone'}`).toBe(true);
    for (const d of canaryDirs()) {
      expect(existsSync(d), `${d} was removed`).toBe(true);
      expect(readFileSync(join(d, 'cgroup.procs'), 'utf8').split('\n')).toContain(String(canary.pid));
    }
  }

  it('run --bundle with linux.cgroupsPath naming an existing cgroup joins it and leaves its processes and directory alone', () => {
    const dir = bundle(['/bin/cat', '/proc/self/cgroup'], { cgroupsPath: CANARY });
    dirs.push(dir);
    const r = tsrun(['run', '--rm', '--bundle', dir]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    // it did join: the container's own view of its cgroup is the canary's
    expect(r.stdout).toMatch(new RegExp(`^\\d+:pids:${CANARY}$`, 'm'));
    expectCanaryUnharmed();
  });

  it('create/start/delete --force of a running container in an existing cgroup kills only the container', async () => {
    const dir = bundle(['/bin/sleep', '60'], { cgroupsPath: CANARY });
    dirs.push(dir);
    const id = `cgown-run-${process.pid}`;
    expect(ociCreate([], dir, id)).toBe(0);
    expect(tsrun(['start', id]).code).toBe(0);
    const pid = ociPid([], id);
    expect(aliveNotZombie(pid)).toBe(true);
    const r = tsrun(['delete', '--force', id]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    // the container itself is gone (its init was ours to kill) ...
    for (let i = 0; i < 100 && aliveNotZombie(pid); i++) await sleep(10);
    expect(aliveNotZombie(pid)).toBe(false);
    // ... and what was there before is not
    expectCanaryUnharmed();
  });

  it('without a PID namespace, delete --force kills the init and its descendants, not the rest of an existing cgroup', async () => {
    const dir = bundle(['/bin/sh', '-c', 'sleep 60 & sleep 60 & wait'], { cgroupsPath: CANARY });
    const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    cfg.linux.namespaces = cfg.linux.namespaces.filter((n: { type: string }) => n.type !== 'pid');
    writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
    dirs.push(dir);
    const id = `cgown-hostpid-${process.pid}`;
    expect(ociCreate([], dir, id)).toBe(0);
    expect(tsrun(['start', id]).code).toBe(0);
    const init = ociPid([], id);
    const kids = (): number[] => readFileSync(`/proc/${init}/task/${init}/children`, 'utf8').split(' ').filter(Boolean).map(Number);
    for (let i = 0; i < 100 && kids().length < 2; i++) await sleep(10);
    const sleeps = kids();
    expect(sleeps).toHaveLength(2);
    const r = tsrun(['delete', '--force', id]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    for (let i = 0; i < 100 && [init, ...sleeps].some(aliveNotZombie); i++) await sleep(10);
    expect([init, ...sleeps].filter(aliveNotZombie)).toEqual([]);
    expectCanaryUnharmed();
  });

  it('create/start of /bin/true, then delete --force of the stopped container, leaves the existing cgroup alone', async () => {
    const dir = bundle(['/bin/true'], { cgroupsPath: CANARY });
    dirs.push(dir);
    const id = `cgown-true-${process.pid}`;
    expect(ociCreate([], dir, id)).toBe(0);
    expect(tsrun(['start', id]).code).toBe(0);
    for (let i = 0; i < 100 && JSON.parse(tsrun(['state', id]).stdout).status !== 'stopped'; i++) await sleep(10);
    const r = tsrun(['delete', '--force', id]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expectCanaryUnharmed();
  });

  it('pause refuses a container whose cgroup tsrun did not create (the freezer would stop the canary too)', () => {
    const dir = bundle(['/bin/sleep', '60'], { cgroupsPath: CANARY });
    dirs.push(dir);
    const id = `cgown-pause-${process.pid}`;
    expect(ociCreate([], dir, id)).toBe(0);
    try {
      expect(tsrun(['start', id]).code).toBe(0);
      const r = tsrun(['pause', id]);
      expect(r.code).toBe(125);
      expect(r.stderr).toMatch(/^tsrun: pause .*linux\.cgroupsPath .*not created by tsrun/m);
      expect(procState(canary.pid!)).toMatch(/^[SR]$/);
    } finally {
      expect(tsrun(['delete', '--force', id]).code).toBe(0);
    }
    expectCanaryUnharmed();
  });

  it('the same container id under two state roots: delete --force in one leaves the other running', () => {
    const dir = bundle(['/bin/sleep', '60']);
    dirs.push(dir);
    const other = mkdtempSync(join(tmpdir(), 'tsrun-cgown-root-'));
    dirs.push(other);
    const B = ['--root', join(other, 'run'), '--data-root', join(other, 'data')];
    const id = `cgown-twin-${process.pid}`;
    try {
      expect(ociCreate([], dir, id)).toBe(0);
      expect(ociCreate(B, dir, id)).toBe(0);
      expect(tsrun(['start', id]).code).toBe(0);
      expect(tsrun([...B, 'start', id]).code).toBe(0);
      const a = ociPid([], id);
      const b = ociPid(B, id);
      const r = tsrun(['delete', '--force', id]);
      expect(r.code, r.stderr).toBe(0);
      expect(aliveNotZombie(b), `the other root's container (pid ${b}) is ${procState(b) ?? 'gone'}`).toBe(true);
      expect(JSON.parse(tsrun([...B, 'state', id]).stdout).status).toBe('running');
      expect(a).not.toBe(b);
    } finally {
      tsrun(['delete', '--force', id]);
      const r = tsrun([...B, 'delete', '--force', id]);
      expect(r.code, r.stderr).toBe(0);
    }
  });

  it('stats lists only the containers of its own state root', () => {
    const dir = bundle(['/bin/sleep', '60']);
    dirs.push(dir);
    const other = mkdtempSync(join(tmpdir(), 'tsrun-cgown-root-'));
    dirs.push(other);
    const B = ['--root', join(other, 'run'), '--data-root', join(other, 'data')];
    const mine = `cgown-mine-${process.pid}`;
    const theirs = `cgown-theirs-${process.pid}`;
    try {
      expect(ociCreate([], dir, mine)).toBe(0);
      expect(ociCreate(B, dir, theirs)).toBe(0);
      expect(tsrun(['start', mine]).code).toBe(0);
      expect(tsrun([...B, 'start', theirs]).code).toBe(0);
      const ids = (root: string[]): string[] => {
        const r = tsrun([...root, 'stats', '--no-stream', '--format', 'json']);
        expect(r.code, r.stderr).toBe(0);
        return r.stdout.split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { ID: string }).ID);
      };
      expect(ids([])).toEqual([mine.slice(0, 12)]);
      expect(ids(B)).toEqual([theirs.slice(0, 12)]);
      expect(tsrun(['stats', '--no-stream', theirs]).code).toBe(125);
    } finally {
      tsrun(['delete', '--force', mine]);
      tsrun([...B, 'delete', '--force', theirs]);
    }
  });
});
