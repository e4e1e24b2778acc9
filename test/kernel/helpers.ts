import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { defaultCgroupParent } from '../../src/controls/cgroups/manager.js';

export const ROOT = join(import.meta.dirname, '..', '..');
export const BIN = join(ROOT, 'bin', 'tsrun');
export const isRoot = process.getuid?.() === 0;
export const inCI = process.env.CI === 'true';

/**
 * A describe() for tests that need root and the real kernel. Outside CI they are skipped
 * for non-root users; in CI (CI=true) that would hide a broken set-up, so it fails instead.
 */
export function describeKernel(name: string, fn: () => void): void {
  if (isRoot) describe(name, fn);
  else if (inCI) describe(name, () => it('runs as root', () => expect.fail('kernel tests need root; CI runs them as root')));
  else describe.skip(name, fn);
}

export function testEnv() {
  const env = inject('tsrunEnv');
  if (!env) throw new Error('tsrunEnv not provided: global set-up did not run as root');
  return env;
}

export interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export function tsrunEnvVars(): Record<string, string> {
  const e = testEnv();
  return { ...(process.env as Record<string, string>), TSRUN_DATA: e.data, TSRUN_ROOT: e.root };
}

/** Runs bin/tsrun with the test's own state and data directories. */
export function tsrun(args: string[], opts: { input?: string; env?: Record<string, string>; timeout?: number } = {}): Result {
  const r = spawnSync(BIN, args, {
    input: opts.input ?? '',
    env: { ...tsrunEnvVars(), ...opts.env },
    encoding: 'utf8',
    timeout: opts.timeout ?? 30_000,
  });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

/** Starts bin/tsrun in the background (for signal tests). */
export function tsrunAsync(args: string[]) {
  return spawn(BIN, args, { env: tsrunEnvVars(), stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Runs the probe in a container and returns its JSON lines. */
export function probe(flags: string[], probeArgs: string[] = ['info']): { result: Result; lines: Record<string, any>[] } {
  const result = tsrun(['run', '--rm', ...flags, 'probe', '/probe', ...probeArgs]);
  const lines = result.stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, any>);
  return { result, lines };
}

export function probeInfo(flags: string[] = []): Record<string, any> {
  const { result, lines } = probe(flags, ['info']);
  expect(result.stderr).toBe('');
  expect(result.code).toBe(0);
  expect(lines).toHaveLength(1);
  return lines[0]!;
}

/** What a test run may have left behind: mounts, container dirs, state dirs, init processes. */
export function leaks(): string[] {
  const e = testEnv();
  const found: string[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    if (line.includes(e.base)) found.push(`mount: ${line}`);
  }
  for (const sub of [join(e.data, 'containers'), e.root]) {
    if (existsSync(sub)) for (const d of readdirSync(sub)) found.push(`dir: ${join(sub, d)}`);
  }
  // a tsrun-init of another state root (another checkout's tests, a user's containers) is
  // not this suite's leak: those sit under /tsrun/<other root's tag>/ in every hierarchy.
  // An init outside any tsrun parent (a test's own cgroupsPath) counts, to stay on the safe side.
  const mine = defaultCgroupParent(e.root);
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      // an exiting process (empty cmdline, a zombie until its parent reaps it) holds nothing
      if (!cmd) continue;
      const paths = readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').filter(Boolean).map((l) => l.split(':').slice(2).join(':'));
      // any process in this root's cgroups (a container's command), or an init of no other root
      const ours = paths.some((p) => p.startsWith(`${mine}/`));
      const other = paths.some((p) => p.startsWith('/tsrun/') && !p.startsWith(`${mine}/`));
      if (ours || (cmd.startsWith('tsrun-init') && !other)) found.push(`process: ${pid} ${cmd.replace(/\0/g, ' ').trim()}`);
    } catch {
      /* exited */
    }
  }
  return found;
}

export function hostNs(name: string): string {
  return spawnSync('readlink', [`/proc/self/ns/${name}`], { encoding: 'utf8' }).stdout.trim();
}

/**
 * An OCI bundle at `dir` (made if missing): a copy of the probe image's root (busybox and
 * /probe) and a config.json running `args` as root with /proc mounted (or `o.mounts`), the
 * five usual namespaces with `o.linux` merged over them, and `o.config` fields at top level.
 */
export function probeBundle(dir: string, args: string[], o: { linux?: Record<string, unknown>; mounts?: unknown[]; config?: Record<string, unknown> } = {}): string {
  mkdirSync(dir, { recursive: true });
  cpSync(testEnv().rootfs.probe, join(dir, 'rootfs'), { recursive: true, verbatimSymlinks: true });
  writeFileSync(
    join(dir, 'config.json'),
    JSON.stringify({
      ociVersion: '1.2.0',
      process: { args, cwd: '/', user: { uid: 0, gid: 0 }, env: ['PATH=/bin:/usr/bin'] },
      root: { path: 'rootfs' },
      mounts: o.mounts ?? [{ destination: '/proc', type: 'proc', source: 'proc' }],
      ...o.config,
      linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'uts' }, { type: 'ipc' }, { type: 'network' }], ...o.linux },
    }),
  );
  return dir;
}
