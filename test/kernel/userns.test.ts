// User-namespace remap on the real kernel: container root is host uid 100000.
// The account files are a private copy (TSRUN_ID_PREFIX): no user is ever added to the host.
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeKernel, hostNs, leaks, testEnv, tsrun, type Result } from './helpers.js';

let prefix = '';
let hostPasswd = '';
const env = () => ({ TSRUN_ID_PREFIX: prefix });
const run = (args: string[]): Result => tsrun(args, { env: env() });
const probeJson = (flags: string[], probeArgs: string[] = ['info']) => {
  const r = run(['run', '--rm', ...flags, 'probe', '/probe', ...probeArgs]);
  expect(r.stderr).toBe('');
  return JSON.parse(r.stdout.split('\n')[0]!);
};

describeKernel('user namespace remap on the real kernel', () => {
  beforeAll(() => {
    hostPasswd = readFileSync('/etc/passwd', 'utf8');
    prefix = mkdtempSync(join(tmpdir(), 'tsrun-ids-'));
    mkdirSync(join(prefix, 'etc'));
    for (const f of ['passwd', 'group', 'shadow', 'gshadow']) copyFileSync(`/etc/${f}`, join(prefix, 'etc', f));
  });
  afterAll(() => {
    rmSync(prefix, { recursive: true, force: true });
    expect(readFileSync('/etc/passwd', 'utf8')).toBe(hostPasswd);
    expect(leaks()).toEqual([]);
  });

  it('a plan (explain, run --dry-run) of --userns-remap default changes nothing on the host: it says what the run would create', () => {
    const files = ['passwd', 'group', 'subuid', 'subgid'].map((f) => join(prefix, 'etc', f));
    const before = files.map((f) => (existsSync(f) ? readFileSync(f, 'utf8') : null));
    for (const args of [['explain', '--userns-remap', 'default', 'busybox'], ['run', '--dry-run', '--userns-remap', 'default', 'busybox']]) {
      const r = run(args);
      expect(r.code).toBe(0);
      expect(r.stderr).toMatch(/^tsrun: --userns-remap default \(plan only\): a run would create the system user "tsrun" in \S+\/etc\/passwd; write "tsrun:100000:65536" to \S+\/etc\/subuid; write "tsrun:100000:65536" to \S+\/etc\/subgid \(container root would be host uid 100000\)\n$/);
      // the plan shows the mapping the run would write
      expect(r.stdout).toMatch(/uid_map[^\n]*0 100000 65536/);
      expect(files.map((f) => (existsSync(f) ? readFileSync(f, 'utf8') : null))).toEqual(before);
    }
  });

  it('--userns-remap default creates the tsrun user and a 65536-id range (in the copy only), and maps root to it', () => {
    const r = run(['run', '--rm', '--userns-remap', 'default', 'probe', '/probe', 'info']);
    // creating the user is said, with what was written (issue 13 item 5)
    expect(r.stderr).toMatch(/^tsrun: --userns-remap default: created the system user "tsrun" \(uid \d+\) in \S+\/etc\/passwd; wrote "tsrun:100000:65536" to \S+\/etc\/subuid; wrote "tsrun:100000:65536" to \S+\/etc\/subgid \(container root will be host uid 100000\)\n$/);
    const info = JSON.parse(r.stdout.split('\n')[0]!);
    expect(readFileSync(join(prefix, 'etc/passwd'), 'utf8')).toMatch(/^tsrun:x:\d+:\d+:.*:\/usr\/sbin\/nologin$/m);
    expect(readFileSync(join(prefix, 'etc/subuid'), 'utf8')).toBe('tsrun:100000:65536\n');
    expect(readFileSync(join(prefix, 'etc/subgid'), 'utf8')).toBe('tsrun:100000:65536\n');
    expect(readFileSync('/etc/passwd', 'utf8')).toBe(hostPasswd);
    expect(info).toMatchObject({ uid: 0, gid: 0, euid: 0, groups: [0], CapEff: '00000000a80425fb' });
    expect(info.ns.user).not.toBe(hostNs('user'));
  });

  it('the remapped init is in its own cgroup in every hierarchy (tsrun moves it: the host\'s tasks files are not its own)', () => {
    const r = run(['run', '--rm', '--userns-remap', 'default', '--cgroupns', 'host', 'busybox', 'cat', '/proc/1/cgroup']);
    expect(r.stderr).toBe('');
    const lines = r.stdout.trim().split('\n').filter((l) => !/^\d+:name=/.test(l));
    expect(lines.length).toBeGreaterThan(0);
    // /tsrun/<this state root's tag>/<id>
    for (const l of lines) expect(l).toMatch(/^\d+:[^:]*:\/tsrun\/[0-9a-f]{12}\/[0-9a-f]{64}$/);
  });

  it('/proc/self/uid_map and gid_map show the mapping; without the remap they are the identity', () => {
    const r = run(['run', '--rm', '--userns-remap', 'default', 'busybox', 'cat', '/proc/self/uid_map', '/proc/self/gid_map']);
    expect(r.stdout.split('\n').filter(Boolean).map((l) => l.trim().split(/\s+/))).toEqual([
      ['0', '100000', '65536'],
      ['0', '100000', '65536'],
    ]);
    expect(run(['run', '--rm', 'busybox', 'cat', '/proc/self/uid_map']).stdout.trim().split(/\s+/)).toEqual(['0', '0', '4294967295']);
  });

  it('image files appear owned by root inside (idmapped layers); the image on the host is untouched', () => {
    const r = run(['run', '--rm', '--userns-remap', 'default', 'busybox', 'sh', '-c', 'stat -c "%u:%g" / /bin/busybox /etc; echo new > /etc/new && stat -c "%u:%g" /etc/new']);
    expect(r).toMatchObject({ code: 0, stdout: '0:0\n0:0\n0:0\n0:0\n' });
    const img = testEnv().layers.busybox;
    expect(statSync(join(img, 'bin', 'busybox')).uid).toBe(0);
    expect(existsSync(join(img, 'etc', 'new'))).toBe(false);
  });

  it('a file container root creates in a bind-mounted host directory is owned by 100000:100000 on the host', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsrun-vol-'));
    try {
      chmodSync(dir, 0o777);
      expect(probeJson(['--userns-remap', 'default', '-v', `${dir}:/data`], ['write', '/data/f'])).toEqual({ op: 'write', errno: '0' });
      const st = statSync(join(dir, 'f'));
      expect([st.uid, st.gid]).toEqual([100000, 100000]);
      // without the remap, container root is host root
      expect(probeJson(['-v', `${dir}:/data`], ['write', '/data/g'])).toEqual({ op: 'write', errno: '0' });
      expect(statSync(join(dir, 'g')).uid).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('container root cannot read or write a host-root-owned 0600 file through a bind mount (lab 5, /etc/shadow)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsrun-vol-'));
    try {
      chmodSync(dir, 0o755);
      writeFileSync(join(dir, 'shadow'), 'root:secret\n', { mode: 0o600 });
      expect(probeJson(['--userns-remap', 'default', '-v', `${dir}/shadow:/tmp/shadow`], ['read', '/tmp/shadow'])).toEqual({ op: 'read', errno: 'EACCES' });
      expect(probeJson(['--userns-remap', 'default', '-v', `${dir}/shadow:/tmp/shadow`], ['open-write', '/tmp/shadow'])).toEqual({ op: 'open-write', errno: 'EACCES' });
      expect(probeJson(['-v', `${dir}/shadow:/tmp/shadow`], ['read', '/tmp/shadow'])).toEqual({ op: 'read', errno: '0' });
      expect(readFileSync(join(dir, 'shadow'), 'utf8')).toBe('root:secret\n');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a non-root user in the remapped container is host uid 101000 and holds no capability', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsrun-vol-'));
    try {
      chmodSync(dir, 0o777);
      expect(probeJson(['--userns-remap', 'default', '-u', '1000', '-v', `${dir}:/data`], ['info'])).toMatchObject({ uid: 1000, CapEff: '0000000000000000' });
      expect(probeJson(['--userns-remap', 'default', '-u', '1000', '-v', `${dir}:/data`], ['write', '/data/u'])).toEqual({ op: 'write', errno: '0' });
      expect(statSync(join(dir, 'u')).uid).toBe(101000);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a detached remapped container: exec joins its user namespace and sees the same map', () => {
    const id = run(['run', '-d', '--userns-remap', 'default', 'probe', '/probe', 'sleep', '30']).stdout.trim();
    try {
      const r = run(['exec', id, 'sh', '-c', 'id -u; cat /proc/self/uid_map; stat -c %u /bin/busybox']);
      expect(r.stdout.split('\n').map((l) => l.trim().split(/\s+/).join(' '))).toEqual(['0', '0 100000 65536', '0', '']);
    } finally {
      expect(run(['rm', '-f', id]).code).toBe(0);
    }
  });

  it('remapped root is not exempt from --ulimit nproc (host uid 0 is)', () => {
    expect(probeJson(['--userns-remap', 'default', '--ulimit', 'nproc=5'], ['fork', '20', '1'])).toEqual({ op: 'fork', ok: 4, errno: 'EAGAIN' });
    const root = run(['run', '--rm', '--ulimit', 'nproc=5', 'probe', '/probe', 'fork', '20', '1']);
    expect(JSON.parse(root.stdout.split('\n')[0]!)).toEqual({ op: 'fork', ok: 20, errno: '0' });
    expect(root.stderr).toMatch(/--ulimit nproc: RLIMIT_NPROC does not limit this container: it runs as root/);
  });

  it('the config file\'s userns-remap applies; --userns host turns it off', () => {
    const cfg = join(prefix, 'config.json');
    writeFileSync(cfg, JSON.stringify({ 'userns-remap': 'default', 'no-new-privileges': true, 'default-ulimits': { nofile: { Name: 'nofile', Soft: 1024, Hard: 2048 } } }));
    const on = probeJson(['--config', cfg]);
    expect(on.ns.user).not.toBe(hostNs('user'));
    expect(on).toMatchObject({ NoNewPrivs: '1', nofile: [1024, 2048] });
    const off = probeJson(['--config', cfg, '--userns', 'host', '--security-opt', 'no-new-privileges=false', '--ulimit', 'nofile=512']);
    expect(off.ns.user).toBe(hostNs('user'));
    expect(off).toMatchObject({ NoNewPrivs: '0', nofile: [512, 512] });
    writeFileSync(cfg, JSON.stringify({ 'userns-remapp': 'default' }));
    const bad = run(['run', '--rm', '--config', cfg, 'busybox', 'true']);
    expect(bad.code).toBe(125);
    expect(bad.stderr).toMatch(/"userns-remapp": unknown key/);
  });

  it('bad remaps fail with exit 125 before anything is created', () => {
    const h = run(['run', '--rm', '--userns-remap', 'default', '--network', 'host', 'busybox', 'true']);
    expect(h.code).toBe(125);
    expect(h.stderr).toMatch(/cannot share the host's network namespace/);
    const p = run(['run', '--rm', '--userns-remap', 'default', '--privileged', 'busybox', 'true']);
    expect(p.code).toBe(125);
    expect(p.stderr).toMatch(/--privileged cannot be used with a user namespace/);
    writeFileSync(join(prefix, 'etc/passwd'), readFileSync(join(prefix, 'etc/passwd'), 'utf8') + 'small:x:4001:4001::/:/bin/false\nover:x:4002:4002::/:/bin/false\n');
    writeFileSync(join(prefix, 'etc/group'), readFileSync(join(prefix, 'etc/group'), 'utf8') + 'small:x:4001:\nover:x:4002:\n');
    writeFileSync(join(prefix, 'etc/subuid'), 'tsrun:100000:65536\nsmall:300000:1000\nover:150000:65536\n');
    const cases: [string, RegExp][] = [
      ['nosuchuser', /no user "nosuchuser"/],
      ['small', /"small" has 1000 subordinate ids; at least 65536/],
      ['over', /range 150000\+65536 overlaps tsrun:100000:65536/],
      ['daemon', /no subordinate ids for "daemon"/],
    ];
    for (const [user, msg] of cases) {
      const r = run(['run', '--rm', '--userns-remap', user, 'busybox', 'true']);
      expect(r.code, user).toBe(125);
      expect(r.stderr, user).toMatch(msg);
    }
    expect(leaks()).toEqual([]);
  });
});
