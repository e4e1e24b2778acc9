// Corners of the OCI runtime spec that engines or `runc spec` users reach: linux.devices
// exactly as written (mode without the umask, FIFOs, owners), a spec without a namespaces
// list or without a mount namespace, hugetlb limits on a hybrid host.
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeKernel, leaks, testEnv, tsrun } from './helpers.js';

let base = '';

const STD_MOUNTS = [
  { destination: '/proc', type: 'proc', source: 'proc' },
  { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
];

/** A bundle with the probe image's root; `linux` replaces the default linux section's fields. */
export function bundle(name: string, args: string[], linux: Record<string, unknown>, extra: Record<string, unknown> = {}): string {
  const dir = join(base, name);
  mkdirSync(dir);
  cpSync(testEnv().rootfs.probe, join(dir, 'rootfs'), { recursive: true, verbatimSymlinks: true });
  writeFileSync(
    join(dir, 'config.json'),
    JSON.stringify({
      ociVersion: '1.2.0',
      process: { args, cwd: '/', user: { uid: 0, gid: 0 }, env: ['PATH=/bin:/usr/bin'] },
      root: { path: 'rootfs' },
      mounts: STD_MOUNTS,
      ...extra,
      linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'uts' }, { type: 'ipc' }, { type: 'network' }], ...linux },
    }),
  );
  return dir;
}

describeKernel('OCI spec corners', () => {
  beforeAll(() => {
    base = mkdtempSync(join(tmpdir(), 'tsrun-corners-'));
  });
  afterAll(() => {
    rmSync(base, { recursive: true, force: true });
    expect(leaks().filter((l) => !l.startsWith('process:'))).toEqual([]);
  });

  it('linux.devices: the mode is exact (no umask), type p is a FIFO, uid and gid are applied', () => {
    const dir = bundle('devices', ['/bin/stat', '-c', '%n %a %u %g %F %t:%T', '/dev/mynull', '/dev/myfifo', '/dev/myu'], {
      devices: [
        { path: '/dev/mynull', type: 'c', major: 1, minor: 3, fileMode: 0o660, uid: 1234, gid: 5678 },
        { path: '/dev/myfifo', type: 'p', fileMode: 0o622, uid: 42, gid: 43 },
        { path: '/dev/myu', type: 'u', major: 1, minor: 5, fileMode: 0o666 },
      ],
    });
    // the engine's umask must not reach the nodes: runc creates them with the spec's mode
    const r = spawnSync('/bin/sh', ['-c', `umask 077; exec "$0" "$@"`, join(import.meta.dirname, '..', '..', 'bin', 'tsrun'), 'run', '--rm', '--bundle', dir], {
      env: { ...process.env, TSRUN_ROOT: testEnv().root, TSRUN_DATA: testEnv().data },
      encoding: 'utf8',
    });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout.trim().split('\n')).toEqual([
      '/dev/mynull 660 1234 5678 character special file 1:3',
      '/dev/myfifo 622 42 43 fifo 0:0',
      '/dev/myu 666 0 0 character special file 1:5',
    ]);
  });
});
