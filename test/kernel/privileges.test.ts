// Capabilities, no-new-privileges, rlimits, masked paths, sysctls, devices and
// --privileged, each with and without the control, as the kernel reports them.
import { chmodSync, cpSync, existsSync, readFileSync, rmSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeKernel, leaks, probe, probeInfo, testEnv, tsrun } from './helpers.js';

const DEFAULT_CAPS = '00000000a80425fb';

/** CapEff of this test process: what --privileged can hand out without a user namespace. */
function ownCapEff(): string {
  return /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]!;
}

describeKernel('privilege controls on the real kernel', () => {
  // An image with a setuid-root copy of the probe, for no-new-privileges.
  beforeAll(() => {
    const dst = join(testEnv().base, 'rootfs', 'suidprobe');
    if (!existsSync(dst)) {
      cpSync(testEnv().rootfs.probe, dst, { recursive: true, verbatimSymlinks: true });
      cpSync(join(dst, 'probe'), join(dst, 'probe-suid'));
      chmodSync(join(dst, 'probe-suid'), 0o4755);
      const r = tsrun(['import', '--change', 'CMD ["/probe","info"]', dst, 'suidprobe']);
      expect(r.stderr).toBe('');
    }
  });
  afterAll(() => {
    expect(leaks()).toEqual([]);
  });

  it('capabilities: CapEff is docker\'s 14 by default, and follows --cap-drop/--cap-add', () => {
    const def = probeInfo();
    expect(def).toMatchObject({ CapEff: DEFAULT_CAPS, CapPrm: DEFAULT_CAPS, CapBnd: DEFAULT_CAPS, CapInh: '0000000000000000', CapAmb: '0000000000000000' });
    expect(probeInfo(['--cap-drop', 'ALL'])).toMatchObject({ CapEff: '0000000000000000', CapBnd: '0000000000000000' });
    expect(probeInfo(['--cap-add', 'sys_admin'])).toMatchObject({ CapEff: '00000000a82425fb', CapBnd: '00000000a82425fb' });
    expect(probeInfo(['--cap-drop', 'ALL', '--cap-add', 'CAP_NET_BIND_SERVICE'])).toMatchObject({ CapEff: '0000000000000400' });
  });

  it('capabilities: chown and mknod work with their capability and fail with EPERM without it', () => {
    expect(probe([], ['chown', '/etc/passwd', '1', '1']).lines[0]).toEqual({ op: 'chown', errno: '0' });
    expect(probe(['--cap-drop', 'CHOWN'], ['chown', '/etc/passwd', '1', '1']).lines[0]).toEqual({ op: 'chown', errno: 'EPERM' });
    expect(probe([], ['mknod', '/tmp/null2']).lines[0]).toEqual({ op: 'mknod', errno: '0' });
    expect(probe(['--cap-drop', 'MKNOD'], ['mknod', '/tmp/null2']).lines[0]).toEqual({ op: 'mknod', errno: 'EPERM' });
  });

  it('capabilities: a non-root user keeps none across execve', () => {
    expect(probeInfo(['-u', '1000'])).toMatchObject({ CapEff: '0000000000000000', CapPrm: '0000000000000000', CapBnd: DEFAULT_CAPS });
  });

  it('capabilities: an unknown name or one tsrun lacks is refused before anything starts', () => {
    const u = tsrun(['run', '--rm', '--cap-add', 'SYS_FOO', 'busybox', 'true']);
    expect(u.code).toBe(125);
    expect(u.stderr).toMatch(/--cap-add: unknown capability "SYS_FOO"/);
    if (!ownCapEff().endsWith('fffffff')) {
      const r = tsrun(['run', '--rm', '--cap-add', 'SYS_RESOURCE', 'busybox', 'true']);
      expect(r.code).toBe(125);
      expect(r.stderr).toMatch(/CAP_SYS_RESOURCE requested but tsrun itself does not hold it/);
    }
    expect(leaks()).toEqual([]);
  });

  it('capabilities: a bundle\'s ambient set is what a non-root user keeps across execve', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsrun-bundle-'));
    try {
      cpSync(testEnv().rootfs.probe, join(dir, 'rootfs'), { recursive: true, verbatimSymlinks: true });
      const caps = (ambient: string[]) => ({ bounding: ['CAP_NET_BIND_SERVICE'], permitted: ['CAP_NET_BIND_SERVICE'], effective: ['CAP_NET_BIND_SERVICE'], inheritable: ambient, ambient });
      const spec = (ambient: string[]) => ({
        ociVersion: '1.2.0',
        process: { args: ['/probe', 'info'], cwd: '/', user: { uid: 1000, gid: 1000 }, env: ['PATH=/bin'], capabilities: caps(ambient) },
        root: { path: 'rootfs' },
        mounts: [{ destination: '/proc', type: 'proc', source: 'proc' }],
        linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }] },
      });
      writeFileSync(join(dir, 'config.json'), JSON.stringify(spec(['CAP_NET_BIND_SERVICE'])));
      expect(JSON.parse(tsrun(['run', '--rm', '--bundle', dir]).stdout)).toMatchObject({ uid: 1000, CapEff: '0000000000000400', CapAmb: '0000000000000400' });
      writeFileSync(join(dir, 'config.json'), JSON.stringify(spec([])));
      expect(JSON.parse(tsrun(['run', '--rm', '--bundle', dir]).stdout)).toMatchObject({ uid: 1000, CapEff: '0000000000000000', CapAmb: '0000000000000000' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('no-new-privileges: a setuid-root binary gives euid 0 without it, not with it', () => {
    const without = probe(['-u', '1000'], ['info']);
    expect(without.lines[0]).toMatchObject({ euid: 1000, NoNewPrivs: '0' });
    const suid = tsrun(['run', '--rm', '-u', '1000', 'suidprobe', '/probe-suid', 'info']);
    const s = JSON.parse(suid.stdout);
    expect(s).toMatchObject({ uid: 1000, euid: 0, NoNewPrivs: '0', CapEff: DEFAULT_CAPS });
    for (const opt of ['no-new-privileges', 'no-new-privileges=true', 'no-new-privileges:true']) {
      const n = JSON.parse(tsrun(['run', '--rm', '-u', '1000', '--security-opt', opt, 'suidprobe', '/probe-suid', 'info']).stdout);
      expect(n, opt).toMatchObject({ uid: 1000, euid: 1000, NoNewPrivs: '1', CapEff: '0000000000000000' });
    }
    const f = JSON.parse(tsrun(['run', '--rm', '-u', '1000', '--security-opt', 'no-new-privileges=false', 'suidprobe', '/probe-suid', 'info']).stdout);
    expect(f).toMatchObject({ euid: 0, NoNewPrivs: '0' });
  });

  it('no-new-privileges and file capabilities: a later execve gains none under it; the first one gets what the caller held (as runc)', () => {
    // a private copy of the probe with cap_net_raw=ep as a file capability (security.capability,
    // VFS_CAP_REVISION_2, written by python so no setcap is needed), bind-mounted without nosuid
    const dir = mkdtempSync(join(tmpdir(), 'tsrun-fcap-'));
    try {
      chmodSync(dir, 0o755);
      const bin = join(dir, 'fcap-probe');
      cpSync(testEnv().probe, bin);
      chmodSync(bin, 0o755);
      const set = spawnSync('python3', ['-c', "import os,struct,sys; os.setxattr(sys.argv[1], 'security.capability', struct.pack('<IIIII', 0x02000001, 1 << 13, 0, 0, 0))", bin], { encoding: 'utf8' });
      expect(set.stderr).toBe('');
      const NET_RAW = '0000000000002000';
      const capEff = (flags: string[], cmd: string[]) => {
        const r = tsrun(['run', '--rm', '-u', '1000', ...flags, '-v', `${dir}:/x`, 'busybox', ...cmd]);
        expect(r.stderr).toBe('');
        return JSON.parse(r.stdout.split('\n')[0]!) as { CapEff: string; NoNewPrivs: string };
      };
      const viaShell = ['sh', '-c', 'exec /x/fcap-probe info'];
      // sh runs as uid 1000 with no capability left; its execve of the file gains cap_net_raw...
      expect(capEff([], viaShell)).toMatchObject({ CapEff: NET_RAW, NoNewPrivs: '0' });
      // ...and under no_new_privs it gains nothing: the new permitted set is cut to the old one
      expect(capEff(['--security-opt', 'no-new-privileges'], viaShell)).toMatchObject({ CapEff: '0000000000000000', NoNewPrivs: '1' });
      // the container's first execve comes from the init, which still holds the spec's permitted
      // set (docker's 14): the file's cap_net_raw is within it, so no_new_privs does not cut it
      expect(capEff(['--security-opt', 'no-new-privileges'], ['/x/fcap-probe', 'info'])).toMatchObject({ CapEff: NET_RAW, NoNewPrivs: '1' });
      // with NET_RAW dropped from the bounding set the file cannot get it at all, and since its
      // effective bit is set the kernel refuses the execve (capabilities(7), "safety checking
      // for capability-dumb binaries")
      const dropped = tsrun(['run', '--rm', '-u', '1000', '--cap-drop', 'NET_RAW', '-v', `${dir}:/x`, 'busybox', '/x/fcap-probe', 'info']);
      // 125 as docker: its CLI gives 126 for "permission denied" (EACCES) only
      expect(dropped.code).toBe(125);
      expect(dropped.stderr).toMatch(/execve\("\/x\/fcap-probe".*EPERM/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('rlimits: --ulimit nofile is what the process sees', () => {
    expect(probeInfo(['--ulimit', 'nofile=1000:2000']).nofile).toEqual([1000, 2000]);
    expect(probeInfo(['-u', '4242', '--ulimit', 'nproc=77']).nproc).toEqual([77, 77]);
  });

  it('rlimits: nproc stops a non-root user at N processes with EAGAIN; root is exempt', () => {
    // uid 4242 owns no process on this host, so the container's are the only ones counted
    const limited = probe(['-u', '4242', '--ulimit', 'nproc=5'], ['fork', '20', '1']).lines[0];
    expect(limited).toEqual({ op: 'fork', ok: 4, errno: 'EAGAIN' }); // the probe itself is the 5th
    expect(probe(['-u', '4242'], ['fork', '20', '1']).lines[0]).toEqual({ op: 'fork', ok: 20, errno: '0' });
    const root = probe(['--ulimit', 'nproc=5'], ['fork', '20', '1']);
    expect(root.lines[0]).toEqual({ op: 'fork', ok: 20, errno: '0' });
    // and says so (issue 13 item 5)
    expect(root.result.stderr).toMatch(/^tsrun: warning: --ulimit nproc: RLIMIT_NPROC does not limit this container: it runs as root \(uid 0 of the host\), which fork\(2\) exempts/);
  });

  it('rlimits: a hard limit above tsrun\'s own is refused up front, naming EPERM and CAP_SYS_RESOURCE', () => {
    const hard = Number(/^Max open files\s+\S+\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))![1]);
    const r = tsrun(['run', '--rm', '--ulimit', `nofile=${hard + 1000}`, 'busybox', 'true']);
    if (ownCapEff() === '000001fffeffffff') {
      expect(r.code).toBe(125);
      expect(r.stderr).toMatch(new RegExp(`RLIMIT_NOFILE \\(--ulimit nofile\\) hard ${hard + 1000} is above tsrun's own hard limit ${hard}.*CAP_SYS_RESOURCE.*EPERM`));
      expect(r.stdout).toBe('');
    }
    expect(tsrun(['run', '--rm', '--ulimit', 'nofiles=1', 'busybox', 'true']).stderr).toMatch(/unknown limit "nofiles"/);
    expect(leaks()).toEqual([]);
  });

  it('masked paths: host kernel files read empty, /proc/sys and sysrq-trigger are read-only', () => {
    const r = tsrun(['run', '--rm', 'busybox', 'sh', '-c', 'wc -c < /proc/timer_list; ls /sys/firmware | wc -l']);
    expect(r.stdout).toBe('0\n0\n');
    // (this kernel may be built without magic SysRq: then the file is absent on the host too)
    if (existsSync('/proc/sysrq-trigger')) expect(probe([], ['open-write', '/proc/sysrq-trigger']).lines[0]).toEqual({ op: 'open-write', errno: 'EROFS' });
    expect(probe([], ['open-write', '/proc/sys/kernel/domainname']).lines[0]).toEqual({ op: 'open-write', errno: 'EROFS' });
    const info = probeInfo();
    const types = new Map(info.mounts.map((m: any) => [m.path, m]));
    expect((types.get('/sys/firmware') as any)?.type).toBe('tmpfs');
    expect((types.get('/proc/sys') as any)?.options).toMatch(/^ro,/);
    // without the control: the real files
    const open = tsrun(['run', '--rm', '--security-opt', 'systempaths=unconfined', 'busybox', 'sh', '-c', 'wc -c < /proc/timer_list']);
    expect(Number(open.stdout.trim())).toBeGreaterThan(0);
    // open only, never written (the UTS domainname is the container's own anyway)
    expect(probe(['--security-opt', 'systempaths=unconfined'], ['open-write', '/proc/sys/kernel/domainname']).lines[0]).toEqual({ op: 'open-write', errno: '0' });
  });

  it('sysctl: a namespaced sysctl is set inside only; a host-wide one is refused', () => {
    const host = readFileSync('/proc/sys/kernel/shmmax', 'utf8');
    const r = tsrun(['run', '--rm', '--sysctl', 'kernel.shmmax=1048576', '--sysctl', 'net.ipv4.ip_unprivileged_port_start=80', 'busybox', 'sh', '-c', 'cat /proc/sys/kernel/shmmax /proc/sys/net/ipv4/ip_unprivileged_port_start']);
    expect(r).toMatchObject({ code: 0, stdout: '1048576\n80\n' });
    expect(readFileSync('/proc/sys/kernel/shmmax', 'utf8')).toBe(host);
    const v = tsrun(['run', '--rm', '--sysctl', 'vm.swappiness=1', 'busybox', 'true']);
    expect(v.code).toBe(125);
    expect(v.stderr).toMatch(/vm\.swappiness is not namespaced/);
    const n = tsrun(['run', '--rm', '--network', 'host', '--sysctl', 'net.ipv4.ip_forward=1', 'busybox', 'true']);
    expect(n.code).toBe(125);
    expect(n.stderr).toMatch(/needs the container's own network namespace/);
  });

  it('devices: --device adds only that node; a missing device is refused', () => {
    expect(tsrun(['run', '--rm', 'busybox', 'ls', '/dev/fuse']).code).not.toBe(0);
    const r = tsrun(['run', '--rm', '--device', '/dev/fuse:/dev/myfuse:rw', 'busybox', 'sh', '-c', 'stat -c "%F %t:%T %a" /dev/myfuse']);
    expect(r).toMatchObject({ code: 0, stdout: 'character special file a:e5 600\n' });
    const m = tsrun(['run', '--rm', '--device', '/dev/no-such-device', 'busybox', 'true']);
    expect(m.code).toBe(125);
    expect(m.stderr).toMatch(/--device \/dev\/no-such-device: ENOENT/);
    expect(leaks()).toEqual([]);
  });

  it('device cgroup: a node made with CAP_MKNOD cannot be opened unless --device allows it (v1 devices controller)', () => {
    // /dev/kmsg (1:11) also needs CAP_SYSLOG to read: granted, so only the cgroup decides
    const cmd = ['busybox', 'sh', '-c', 'mknod /tmp/kmsg c 1 11 && (head -c1 /tmp/kmsg >/dev/null 2>/tmp/e; cat /tmp/e; [ -s /tmp/e ] || echo readable)'];
    const denied = tsrun(['run', '--rm', '--cap-add', 'SYSLOG', ...cmd]);
    if (existsSync('/sys/fs/cgroup/devices/devices.list')) expect(denied.stdout).toBe('head: /tmp/kmsg: Operation not permitted\n');
    else expect(denied.stdout).toBe('readable\n'); // cgroup v2: rules not enforced (docs/devices.md)
    expect(tsrun(['run', '--rm', '--cap-add', 'SYSLOG', '--device', '/dev/kmsg:/dev/kmsg:r', ...cmd]).stdout).toBe('readable\n');
    expect(tsrun(['run', '--rm', '--privileged', ...cmd]).stdout).toBe('readable\n');
  });

  it('--privileged: every capability tsrun has, no masks, host devices, and a warning', () => {
    const { result, lines } = probe(['--privileged'], ['info']);
    expect(result.code).toBe(0);
    expect(result.stderr).toMatch(/warning: --privileged/);
    expect(lines[0]).toMatchObject({ CapEff: ownCapEff(), CapBnd: ownCapEff() });
    expect(lines[0]!.mounts.some((m: any) => m.path === '/proc/sys' || m.path === '/sys/firmware')).toBe(false);
    const dev = tsrun(['run', '--rm', '--privileged', 'busybox', 'sh', '-c', 'ls /dev/fuse /dev/loop-control']);
    expect(dev.stdout).toBe('/dev/fuse\n/dev/loop-control\n');
  });
});
