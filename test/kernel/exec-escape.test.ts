import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { BIN, ROOT, describeKernel, leaks, testEnv, tsrun, tsrunEnvVars } from './helpers.js';

// CVE-2019-5736 through `exec` (issue 11, item 1). A container with CAP_SYS_PTRACE
// (--cap-add SYS_PTRACE, --privileged) runs the probe's watcher: it polls /proc/<pid>/exe of
// every process it can see, holds an O_PATH fd to any executable that is not its own, and
// at the end reopens each one for writing (and closes it: it never writes). Meanwhile tsrun
// execs into the container again and again. Had any process running a host binary (tsrun's
// node) entered the container's PID namespace, the watcher would have named it and held it.
//
// tsrun runs here on a PRIVATE COPY of node in a temporary directory, never the host's: the
// copy is what an attacker would reach, and once the exec'ing tsrun has exited nobody runs
// it any more, so the reopen for writing succeeds where the attack succeeds (ETXTBSY while
// any process still executes the file). The host's node is never a target.

interface Watch {
  scans: number;
  seen: { exe: string; pid: number }[];
  held: { exe: string; reopen: string }[];
}

let dir = '';
let node = '';

function watcher(name: string, flags: string[]): { proc: ChildProcess; ready: Promise<void>; result: Promise<Watch> } {
  const proc = spawn(BIN, ['run', '--rm', '--name', name, ...flags, 'probe', '/probe', 'watch-exe', '60'], { env: tsrunEnvVars(), stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  let onReady: () => void = () => undefined;
  const ready = new Promise<void>((r) => (onReady = r));
  proc.stdout!.on('data', (c) => {
    out += c;
    if (out.includes('"ready"')) onReady();
  });
  const result = new Promise<Watch>((resolve, reject) =>
    proc.on('exit', (code) => {
      const last = out.trim().split('\n').filter((l) => l.includes('"watch-exe"')).at(-1);
      if (!last) reject(new Error(`watcher exited ${code} without a report: ${out}`));
      else resolve(JSON.parse(last) as Watch);
    }),
  );
  return { proc, ready, result };
}

/** tsrun started by the private node copy (bin/tsrun would exec the host's node). */
function tsrunOnCopy(args: string[], keepsStdio = false) {
  // (a detached or created container keeps the stdio it was given: then none is captured)
  const r = spawnSync(node, [join(ROOT, 'bin', 'tsrun-node.mjs'), ...args], { env: tsrunEnvVars(), encoding: 'utf8', timeout: 30_000, ...(keepsStdio ? { stdio: 'ignore' as const } : {}) });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describeKernel('CVE-2019-5736 via exec: no host binary enters a container', () => {
  beforeAll(() => {
    dir = mkdtempSync(join(testEnv().base, 'node-copy-'));
    node = join(dir, 'node');
    copyFileSync(process.execPath, node);
    spawnSync('chmod', ['0755', node]);
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
    expect(leaks()).toEqual([]);
  });

  for (const flags of [['--privileged'], ['--cap-drop', 'ALL', '--cap-add', 'SYS_PTRACE']]) {
    it(`a watcher with ${flags.join(' ')} sees no executable from outside the container during exec`, async () => {
      const name = `watch-${flags.length}-${process.pid}`;
      const w = watcher(name, flags);
      try {
        await w.ready;
        for (let i = 0; i < 8; i++) {
          const r = tsrunOnCopy(['exec', name, '/probe', 'exit', String(i % 2)]);
          expect(r.stderr).toBe('');
          expect(r.code).toBe(i % 2);
        }
        const d = tsrunOnCopy(['exec', '-d', name, '/probe', 'exit', '0'], true);
        expect(d.code).toBe(0);
      } finally {
        w.proc.kill('SIGTERM');
      }
      const report = await w.result;
      expect(report.scans).toBeGreaterThan(100);
      // All it may see is its own binary (/probe, also what exec ran: left out by the probe)
      // and, with CAP_SYS_PTRACE, tsrun-init before it execs: a sealed memfd, whose seals
      // refuse writes (test/kernel/escape.test.ts). Nothing from the host's file systems.
      const INIT = '/memfd:tsrun-init (deleted)';
      expect(report.held.filter((h) => h.exe !== INIT)).toEqual([]);
      expect(report.seen.filter((s) => s.exe !== INIT)).toEqual([]);
    });
  }

  // run and create/start clone their init into NEW namespaces (and a new cgroup) that no
  // container process is in yet; the namespaces they join by path (network, ipc, uts, cgroup:
  // what engines share between a pod's containers) are joined by tsrun-init itself. A guard:
  // it passed before the exec fix as well, because run never joined a PID namespace.
  it('run, run -d and create/start with --privileged, joining the watcher\'s network, ipc and uts namespaces: it sees nothing of the host', async () => {
    const name = `watch-run-${process.pid}`;
    const w = watcher(name, ['--privileged']);
    const dir = mkdtempSync(join(testEnv().base, 'bundle-'));
    try {
      await w.ready;
      const pid = JSON.parse(tsrun(['inspect', name]).stdout)[0].State.Pid as number;
      expect(pid).toBeGreaterThan(1);
      for (let i = 0; i < 3; i++) expect(tsrunOnCopy(['run', '--rm', '--privileged', 'probe', '/probe', 'exit', '0']).code).toBe(0);
      expect(tsrunOnCopy(['run', '-d', '--name', `${name}-d`, '--privileged', 'probe', '/probe', 'sleep', '5'], true).code).toBe(0);
      expect(tsrun(['rm', '-f', `${name}-d`]).code).toBe(0);
      cpSync(testEnv().rootfs.probe, join(dir, 'rootfs'), { recursive: true, verbatimSymlinks: true });
      writeFileSync(
        join(dir, 'config.json'),
        JSON.stringify({
          ociVersion: '1.2.0',
          process: { args: ['/probe', 'exit', '0'], cwd: '/', user: { uid: 0, gid: 0 }, env: ['PATH=/bin'] },
          root: { path: 'rootfs' },
          mounts: [{ destination: '/proc', type: 'proc', source: 'proc' }],
          linux: {
            namespaces: [{ type: 'pid' }, { type: 'mount' }, ...['network', 'ipc', 'uts'].map((type) => ({ type, path: `/proc/${pid}/ns/${type === 'network' ? 'net' : type}` }))],
          },
        }),
      );
      const oci = `joiner-${process.pid}`;
      expect(tsrunOnCopy(['create', '--bundle', dir, oci], true).code).toBe(0);
      expect(tsrunOnCopy(['start', oci]).code).toBe(0);
      expect(tsrun(['delete', '--force', oci]).code).toBe(0);
    } finally {
      w.proc.kill('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    }
    const report = await w.result;
    expect(report.scans).toBeGreaterThan(100);
    expect(report.held).toEqual([]);
    expect(report.seen).toEqual([]);
  });
});
