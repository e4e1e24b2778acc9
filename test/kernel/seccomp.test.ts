// seccomp on the real kernel: the probe makes raw system calls inside containers and
// reports the errno the kernel returned, and /proc/<pid>/status shows the filter mode.
import { cpSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { DOCKER_DEFAULT_CAPS } from '../../src/controls/capabilities.js';
import { builtinProfile } from '../../src/controls/seccomp/default-profile.js';
import { resolveDocker } from '../../src/controls/seccomp/profile.js';
import { compile } from '../../src/controls/seccomp/compile.js';
import { encode } from '../../src/controls/seccomp/bpf.js';
import { haveLibseccomp, libseccompProgram } from '../seccomp/libseccomp.js';
import { BIN, describeKernel, leaks, probe, testEnv, tsrun, tsrunEnvVars } from './helpers.js';
import { until } from '../until.js';

const CLONE_NEWUSER = String(0x10000000);
const ADDR_NO_RANDOMIZE = String(0x0040000);

/** errno of each `probe syscall` line, in order */
function calls(flags: string[], list: string[][]): string[] {
  const script = list.map((c) => `/probe syscall ${c.join(' ')}`).join('; ');
  const r = tsrun(['run', '--rm', ...flags, 'probe', 'sh', '-c', script]);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return r.stdout
    .trim()
    .split('\n')
    .map((l) => (JSON.parse(l) as { errno: string }).errno);
}

const DANGEROUS = [
  ['keyctl', '0'],
  ['unshare', CLONE_NEWUSER],
  ['mount', '0', '0', '0'],
  ['clone', CLONE_NEWUSER],
  ['socket', '40', '1', '0'], // AF_VSOCK
  ['socket', '38', '5', '0'], // AF_ALG
  ['clone3', '0', '0'],
  ['personality', ADDR_NO_RANDOMIZE],
];

describeKernel('seccomp on the kernel', () => {
  afterAll(async () => {
    // a killed container's init and monitor finish exiting just after `rm -f`/`delete` return
    await until(() => leaks().length === 0).catch(() => undefined);
    expect(leaks()).toEqual([]);
  });

  it('the default profile: EPERM for the dangerous calls, ENOSYS for clone3, Seccomp: 2', () => {
    expect(calls([], DANGEROUS)).toEqual(['EPERM', 'EPERM', 'EPERM', 'EPERM', 'EPERM', 'EPERM', 'ENOSYS', 'EPERM']);
    const { result, lines } = probe([], ['info']);
    expect(result.code).toBe(0);
    expect(lines[0]!.Seccomp).toBe('2');
  });

  it('ordinary work still runs: sh, ls, fork, pipes, loopback TCP', () => {
    const r = tsrun([
      'run', '--rm', 'probe', 'sh', '-c',
      'ls / >/dev/null && (echo child) | cat && mkdir -p /tmp/w && echo hello > /tmp/w/index.html && httpd -p 127.0.0.1:8080 -h /tmp/w && wget -qO- http://127.0.0.1:8080/index.html && /probe fork 3 0 && /probe syscall personality 0 && /probe syscall socket 2 1 0',
    ]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const out = r.stdout.split('\n');
    expect(out.slice(0, 2)).toEqual(['child', 'hello']);
    expect(JSON.parse(out[2]!)).toMatchObject({ op: 'fork', ok: 3, errno: '0' });
    expect(JSON.parse(out[3]!).errno).toBe('0');
    expect(JSON.parse(out[4]!).errno).toBe('0');
  });

  it('a sample on the real kernel: tsrun\'s program and libseccomp\'s give the same errno', () => {
    expect(haveLibseccomp()).toBe(true); // apt-get install -y libseccomp-dev
    const dir = mkdtempSync(join(tmpdir(), 'tsrun-seccomp-'));
    try {
      const full = resolveDocker(builtinProfile(), { caps: DOCKER_DEFAULT_CAPS, arch: 'x86_64' });
      const ls = libseccompProgram(full, ['x86_64', 'x86', 'x32']);
      const same = { ...full, syscalls: full.syscalls!.map((r) => ({ ...r, names: r.names.filter((n) => !ls.unknown.includes(n)) })) };
      writeFileSync(join(dir, 'tsrun.bpf'), compile(same, { native: 'x86_64' }).bytes);
      writeFileSync(join(dir, 'libseccomp.bpf'), encode(ls.prog));
      const sample = [...DANGEROUS, ['getppid'], ['personality', '0'], ['personality', '0xffffffff'], ['socket', '2', '1', '0'], ['socket', '39', '1', '0'], ['setns', '0', '0'], ['clone', '0']];
      const under = (f: string) => {
        const r = tsrun(['run', '--rm', '--security-opt', 'seccomp=unconfined', '-v', `${dir}:/f:ro`, 'probe', 'sh', '-c', sample.map((c) => `/probe filtered /f/${f} ${c.join(' ')}`).join('; ')]);
        expect(r.stderr).toBe('');
        return r.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { errno: string }).errno);
      };
      const ours = under('tsrun.bpf');
      expect(ours).toEqual(under('libseccomp.bpf'));
      expect(ours.slice(0, DANGEROUS.length)).toEqual(['EPERM', 'EPERM', 'EPERM', 'EPERM', 'EPERM', 'EPERM', 'ENOSYS', 'EPERM']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('--security-opt seccomp=unconfined lets them through', () => {
    const r = calls(['--security-opt', 'seccomp=unconfined'], DANGEROUS);
    // mount still fails: the capability is missing, not the filter (EPERM from capable())
    expect(r[0]).not.toBe('EPERM'); // keyctl(0): EINVAL/EOPNOTSUPP from the keyring code
    expect(r[1]).toBe('0'); // unshare(CLONE_NEWUSER) needs no capability
    expect(r[3]).toBe('0');
    expect(r[4]).not.toBe('EPERM');
    expect(r[6]).toBe('EINVAL'); // clone3(NULL, 0): the kernel itself checked the size
    expect(r[7]).toBe('0');
    expect(probe(['--security-opt', 'seccomp=unconfined'], ['info']).lines[0]!.Seccomp).toBe('0');
    expect(probe(['--privileged'], ['info']).lines[0]!.Seccomp).toBe('0');
  });

  it('as Docker\'s default: io_uring_setup, _enter and _register are refused with EPERM', () => {
    // io_uring: its own submission path has had a long run of privilege-escalation bugs
    // (Docker blocks it since 2023). The host allows io_uring (sysctl 0), so EPERM can only
    // come from the filter; unconfined, the same ring is set up.
    expect(readFileSync('/proc/sys/kernel/io_uring_disabled', 'utf8').trim()).toBe('0');
    const io = (flags: string[]) => {
      const r = tsrun(['run', '--rm', ...flags, 'probe', 'sh', '-c', '/probe io-uring; /probe syscall io_uring_enter -1; /probe syscall io_uring_register -1']);
      expect(r.stderr).toBe('');
      return r.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { errno: string }).errno);
    };
    expect(io([])).toEqual(['EPERM', 'EPERM', 'EPERM']);
    const un = io(['--security-opt', 'seccomp=unconfined']);
    expect(un[0]).toBe('0');
    expect(un.slice(1)).not.toContain('EPERM'); // EBADF, EINVAL: the kernel looked at the arguments
  });

  it('as Docker\'s default: name_to_handle_at works, open_by_handle_at still needs CAP_DAC_READ_SEARCH', () => {
    // name_to_handle_at only encodes a file's identity; opening by handle is what escapes
    // (shocker, 2014) and stays behind CAP_DAC_READ_SEARCH: seccomp refuses it by default,
    // and unconfined the kernel's capability check does (EPERM either way). /dev is the
    // container's tmpfs, which encodes handles (its overlay root answers EOPNOTSUPP).
    expect(probe([], ['handle', '/dev']).lines[0]).toEqual({ op: 'handle', name: '0', open: 'EPERM' });
    expect(probe(['--security-opt', 'seccomp=unconfined'], ['handle', '/dev']).lines[0]).toEqual({ op: 'handle', name: '0', open: 'EPERM' });
    // with the capability, both halves work
    expect(probe(['--cap-add', 'DAC_READ_SEARCH'], ['handle', '/dev']).lines[0]).toEqual({ op: 'handle', name: '0', open: '0' });
  });

  it('a custom profile\'s errno is the one returned', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsrun-seccomp-'));
    try {
      const f = join(dir, 'p.json');
      writeFileSync(f, JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['getppid'], action: 'SCMP_ACT_ERRNO', errnoRet: 99 }, { names: ['keyctl'], action: 'SCMP_ACT_ERRNO', errnoRet: 13 }] }));
      expect(calls(['--security-opt', `seccomp=${f}`], [['getppid'], ['keyctl', '0'], ['personality', ADDR_NO_RANDOMIZE]])).toEqual(['E99', 'EACCES', '0']);
      // the same under no_new_privs (the filter then loads last, in phase seccomp)
      expect(calls(['--security-opt', 'no-new-privileges', '--security-opt', `seccomp=${f}`], [['getppid']])).toEqual(['E99']);
      // bad input: exit 125, the JSON path named, nothing started or left behind
      writeFileSync(f, JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['a'], action: 'SCMP_ACT_ALLOW' }, { names: ['b'], action: 'SCMP_ACT_ALLOW', args: [{ index: 7, value: 1, op: 'SCMP_CMP_EQ' }] }] }));
      const bad = tsrun(['run', '--rm', '--security-opt', `seccomp=${f}`, 'probe', 'true']);
      expect(bad.code).toBe(125);
      expect(bad.stderr).toMatch(/syscalls\[1\]\.args\[0\]\.index: expected 0\.\.5/);
      writeFileSync(f, JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['execve'], action: 'SCMP_ACT_ERRNO' }] }));
      const noexec = tsrun(['run', '--rm', '--security-opt', `seccomp=${f}`, 'probe', 'true']);
      expect(noexec.code).toBe(125);
      expect(noexec.stderr).toMatch(/denies execve/);
      expect(leaks()).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a non-root user without no_new_privs: the filter loads before the capability drop and allows the rest of set-up', () => {
    const { result, lines } = probe(['-u', '1000:1000'], ['info']);
    expect(result.stderr).toBe('');
    expect(lines[0]).toMatchObject({ uid: 1000, gid: 1000, Seccomp: '2', NoNewPrivs: '0', CapEff: '0000000000000000' });
    expect(calls(['-u', '1000:1000'], [['keyctl', '0'], ['clone3', '0', '0']])).toEqual(['EPERM', 'ENOSYS']);
  });

  it('exec gets the container\'s filter', () => {
    const id = tsrun(['run', '-d', 'probe', '/probe', 'sleep', '30']).stdout.trim();
    try {
      const r = tsrun(['exec', id, '/probe', 'syscall', 'keyctl', '0']);
      expect(JSON.parse(r.stdout).errno).toBe('EPERM');
      expect(JSON.parse(tsrun(['exec', id, '/probe', 'info']).stdout).Seccomp).toBe('2');
    } finally {
      expect(tsrun(['rm', '-f', id]).code).toBe(0);
    }
  });

  it('OCI create/start with a bundle\'s linux.seccomp, non-root user: start goes through the filter', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsrun-bundle-'));
    try {
      cpSync(testEnv().rootfs.probe, join(dir, 'rootfs'), { recursive: true, verbatimSymlinks: true });
      writeFileSync(
        join(dir, 'config.json'),
        JSON.stringify({
          ociVersion: '1.2.0',
          process: { args: ['/probe', 'sleep', '30'], cwd: '/', user: { uid: 1000, gid: 1000 }, env: ['PATH=/bin'] },
          root: { path: 'rootfs' },
          mounts: [{ destination: '/proc', type: 'proc', source: 'proc' }],
          linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }], seccomp: resolveDocker(builtinProfile(), { caps: DOCKER_DEFAULT_CAPS, arch: 'x86_64' }) },
        }),
      );
      const pidFile = join(dir, 'pid');
      const c = spawnSync(BIN, ['create', '--bundle', dir, '--pid-file', pidFile, 'sc1'], { env: tsrunEnvVars(), stdio: 'ignore' });
      expect(c.status).toBe(0);
      const pid = Number(readFileSync(pidFile, 'utf8'));
      expect(tsrun(['start', 'sc1']).code).toBe(0);
      await until(() => readlinkSync(`/proc/${pid}/exe`).endsWith('/probe'));
      expect(readFileSync(`/proc/${pid}/status`, 'utf8')).toMatch(/^Seccomp:\s+2$/m);
      expect(tsrun(['kill', 'sc1', 'KILL']).code).toBe(0);
      await until(() => JSON.parse(tsrun(['state', 'sc1']).stdout).status === 'stopped');
      expect(tsrun(['delete', 'sc1']).code).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
