// Corners of the OCI runtime spec that engines or `runc spec` users reach: linux.devices
// exactly as written (mode without the umask, FIFOs, owners), a spec without a namespaces
// list or without a mount namespace, hugetlb limits on a hybrid host.
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { BIN, describeKernel, hostNs, leaks, probeBundle, testEnv, tsrun, tsrunEnvVars } from './helpers.js';

let base = '';

const STD_MOUNTS = [
  { destination: '/proc', type: 'proc', source: 'proc' },
  { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
];

/** A bundle with the probe image's root; `linux` replaces the default linux section's fields. */
export function bundle(name: string, args: string[], linux: Record<string, unknown>, extra: Record<string, unknown> = {}): string {
  const dir = join(base, name);
  mkdirSync(dir);
  return probeBundle(dir, args, { linux, mounts: STD_MOUNTS, config: extra });
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
    const r = spawnSync('/bin/sh', ['-c', `umask 077; exec "$0" "$@"`, BIN, 'run', '--rm', '--bundle', dir], {
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

  /** Creates the container (its init stops before exec), returns what /proc/PID shows from the host. */
  function inspectCreated(dir: string, id: string): { ns: Record<string, string>; root: string } {
    const pidFile = join(base, `${id}.pid`);
    // the init keeps the caller's stdio (engines pass their pipes): give it none to hold
    const c = spawnSync(BIN, ['create', '--bundle', dir, '--pid-file', pidFile, id], { env: tsrunEnvVars(), stdio: 'ignore' });
    try {
      expect(c.status).toBe(0);
      const pid = readFileSync(pidFile, 'utf8').trim();
      const ns: Record<string, string> = {};
      for (const n of ['pid', 'mnt', 'net', 'uts', 'ipc']) ns[n] = readlinkSync(`/proc/${pid}/ns/${n}`);
      return { ns, root: readlinkSync(`/proc/${pid}/root`) };
    } finally {
      expect(tsrun(['delete', '--force', id]).code).toBe(0);
    }
  }

  it('a spec without linux.namespaces runs in the host namespaces, chrooted into its root', () => {
    const dir = bundle('no-ns-list', ['/bin/sh', '-c', 'ls /probe; cat /proc/self/stat 2>&1; true'], {}, { mounts: [] });
    const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    delete cfg.linux.namespaces;
    writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
    const r = tsrun(['run', '--rm', '--bundle', dir]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    // its root is the bundle's rootfs, with no /proc mounted (no mount namespace, no mount)
    expect(r.stdout.trim().split('\n')).toEqual(['/probe', 'cat: can\'t open \'/proc/self/stat\': No such file or directory']);
    const seen = inspectCreated(dir, 'corners-no-ns-list');
    expect(seen.ns).toEqual({ pid: hostNs('pid'), mnt: hostNs('mnt'), net: hostNs('net'), uts: hostNs('uts'), ipc: hostNs('ipc') });
    expect(seen.root).toBe(join(dir, 'rootfs'));
  });

  it('a spec without a mount namespace runs in the host mount namespace, chrooted; mounts there are refused, not made in the host table', () => {
    const dir = bundle('no-mount-ns', ['/bin/sh', '-c', 'hostname; ls /probe'], { namespaces: [{ type: 'uts' }, { type: 'ipc' }] }, { mounts: [], hostname: 'nomnt' });
    const ours = () => readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(base));
    const before = ours();
    const r = tsrun(['run', '--rm', '--bundle', dir]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n')).toEqual(['nomnt', '/probe']);
    const seen = inspectCreated(dir, 'corners-no-mount-ns');
    expect(seen.ns.mnt).toBe(hostNs('mnt'));
    expect(seen.ns.uts).not.toBe(hostNs('uts'));
    expect(seen.ns.ipc).not.toBe(hostNs('ipc'));
    expect(seen.root).toBe(join(dir, 'rootfs'));
    const withMounts = bundle('no-mount-ns-mounts', ['/bin/true'], { namespaces: [{ type: 'pid' }] });
    const m = tsrun(['run', '--rm', '--bundle', withMounts]);
    expect(m.code).toBe(125);
    expect(m.stderr).toMatch(/^tsrun: mounts\[0\].*mount namespace/);
    const masked = bundle('no-mount-ns-masked', ['/bin/true'], { namespaces: [], maskedPaths: ['/proc/kcore'] }, { mounts: [] });
    const k = tsrun(['run', '--rm', '--bundle', masked]);
    expect(k.code).toBe(125);
    expect(k.stderr).toMatch(/^tsrun: linux\.maskedPaths.*mount namespace/);
    expect(ours()).toEqual(before);
  });

  it('hugetlb limits on a hybrid host go to the cgroup2 hierarchy that holds hugetlb, and update changes them', () => {
    const unified = '/sys/fs/cgroup/unified';
    const onV2 = existsSync(`${unified}/cgroup.controllers`) && readFileSync(`${unified}/cgroup.controllers`, 'utf8').split(/\s+/).includes('hugetlb');
    const dir = bundle('hugetlb', ['/bin/sleep', '30'], { resources: { hugepageLimits: [{ pageSize: '2MB', limit: 4 * 1024 * 1024 }] } });
    const id = 'corners-hugetlb';
    const pidFile = join(base, `${id}.pid`);
    const c = spawnSync(BIN, ['create', '--bundle', dir, '--pid-file', pidFile, id], { env: tsrunEnvVars(), stdio: 'ignore' });
    try {
      expect(c.status).toBe(0);
      const pid = readFileSync(pidFile, 'utf8').trim();
      const cg = readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n');
      // read where the kernel says the process is, in whichever hierarchy has hugetlb
      const file = onV2 ? `${unified}${cg.find((l) => l.startsWith('0::'))!.slice(3)}/hugetlb.2MB.max` : `/sys/fs/cgroup/hugetlb${cg.find((l) => l.split(':')[1] === 'hugetlb')!.split(':')[2]}/hugetlb.2MB.limit_in_bytes`;
      expect(readFileSync(file, 'utf8').trim()).toBe(String(4 * 1024 * 1024));
      const u = tsrun(['update', '--resources', '-', id], { input: JSON.stringify({ hugepageLimits: [{ pageSize: '2MB', limit: 8 * 1024 * 1024 }] }) });
      expect(u.stderr).toBe('');
      expect(readFileSync(file, 'utf8').trim()).toBe(String(8 * 1024 * 1024));
    } finally {
      expect(tsrun(['delete', '--force', id]).code).toBe(0);
    }
  });

  it('joins the pid namespace of another container by path (create/start and a foreground run)', () => {
    expect(tsrun(['run', '-d', '--name', 'corners-pid-a', 'busybox', 'sleep', '60']).code).toBe(0);
    try {
      const apid = JSON.parse(tsrun(['state', 'corners-pid-a']).stdout).pid as number;
      const nsPath = `/proc/${apid}/ns/pid`;
      const aNs = readlinkSync(nsPath);
      const ns = [{ type: 'pid', path: nsPath }, { type: 'mount' }];
      // foreground: the command sees A's processes (A's sleep is PID 1 there), its exit status comes back
      const fg = bundle('pid-join-fg', ['/bin/sh', '-c', 'readlink /proc/self/ns/pid; cat /proc/1/cmdline; echo; exit 7'], { namespaces: ns });
      const r = tsrun(['run', '--rm', '--bundle', fg]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(7);
      expect(r.stdout.split('\n').slice(0, 2)).toEqual([aNs, 'sleep\x0060\x00']);
      // create/start, as engines call it: the pid-file names the process in A's namespace
      const cb = bundle('pid-join-create', ['/bin/sleep', '30'], { namespaces: ns });
      const pidFile = join(base, 'pid-join.pid');
      const c = spawnSync(BIN, ['create', '--bundle', cb, '--pid-file', pidFile, 'corners-pid-b'], { env: tsrunEnvVars(), stdio: 'ignore' });
      try {
        expect(c.status).toBe(0);
        const bpid = Number(readFileSync(pidFile, 'utf8'));
        expect(readlinkSync(`/proc/${bpid}/ns/pid`)).toBe(aNs);
        expect(tsrun(['start', 'corners-pid-b']).code).toBe(0);
        const st = JSON.parse(tsrun(['state', 'corners-pid-b']).stdout);
        expect(st).toMatchObject({ status: 'running', pid: bpid });
        // the command really runs as that process
        for (let i = 0; i < 50 && !readFileSync(`/proc/${bpid}/cmdline`, 'utf8').startsWith('/bin/sleep'); i++) spawnSync('sleep', ['0.05']);
        expect(readFileSync(`/proc/${bpid}/cmdline`, 'utf8')).toBe('/bin/sleep\x0030\x00');
      } finally {
        expect(tsrun(['delete', '--force', 'corners-pid-b']).code).toBe(0);
      }
      const det = tsrun(['run', '-d', '--bundle', fg]);
      expect(det.code).toBe(125);
      expect(det.stderr).toMatch(/pid namespace joined by path .*works with create\/start and a foreground run/);
    } finally {
      tsrun(['rm', '-f', 'corners-pid-a']);
    }
  });

  /**
   * A holder that is no container: a user namespace (maps written from here, as root, so
   * setgroups stays allowed) and, inside it, a mount namespace with a tmpfs over the bundle's
   * rootfs/mnt holding a canary file. Returns the pid whose ns/user and ns/mnt are joined.
   */
  function holder(rootfs: string, owned: number[], denySetgroups = false): number {
    const u = spawn('unshare', ['--user', 'sleep', '120'], { stdio: 'ignore' });
    owned.push(u.pid!);
    for (let i = 0; i < 100 && readlinkSync(`/proc/${u.pid}/ns/user`) === hostNs('user'); i++) spawnSync('sleep', ['0.02']);
    writeFileSync(`/proc/${u.pid}/uid_map`, '0 200000 65536\n');
    if (denySetgroups) writeFileSync(`/proc/${u.pid}/setgroups`, 'deny');
    writeFileSync(`/proc/${u.pid}/gid_map`, '0 200000 65536\n');
    const script = `mount -t tmpfs -o mode=755 canary ${rootfs}/mnt && echo canary-$$ > ${rootfs}/mnt/canary && exec sleep 120`;
    const m = spawn('nsenter', ['-t', String(u.pid), '-U', '--', 'unshare', '--mount', '--propagation', 'private', 'sh', '-c', script], { stdio: 'ignore' });
    owned.push(m.pid!);
    for (let i = 0; i < 200; i++) {
      try {
        if (readFileSync(`/proc/${m.pid}/cmdline`, 'utf8').startsWith('sleep') && readlinkSync(`/proc/${m.pid}/ns/mnt`) !== hostNs('mnt')) return m.pid!;
      } catch {
        // not there yet
      }
      spawnSync('sleep', ['0.02']);
    }
    throw new Error('holder did not start');
  }

  it('joins an existing user and mount namespace by path: same inodes, the holder\'s maps, its mounts; bad paths are refused by name', () => {
    const owned: number[] = [];
    chmodSync(base, 0o755); // the holder's root is host uid 200000: it must reach the rootfs
    try {
      const probe = (name: string, ns: object[], extra: Record<string, unknown> = {}) =>
        bundle(name, ['/bin/sh', '-c', 'readlink /proc/self/ns/user; readlink /proc/self/ns/mnt; cat /proc/self/uid_map /mnt/canary; id -u; grep -E "^(CapEff|Groups)" /proc/self/status'], { namespaces: ns, ...extra });
      const b = probe('join-user-mnt', []);
      mkdirSync(join(b, 'rootfs', 'mnt'), { recursive: true });
      const hpid = holder(join(b, 'rootfs'), owned);
      const ns = [{ type: 'pid' }, { type: 'mount', path: `/proc/${hpid}/ns/mnt` }, { type: 'user', path: `/proc/${hpid}/ns/user` }, { type: 'uts' }, { type: 'ipc' }, { type: 'network' }];
      const cfg = JSON.parse(readFileSync(join(b, 'config.json'), 'utf8'));
      cfg.linux.namespaces = ns;
      writeFileSync(join(b, 'config.json'), JSON.stringify(cfg));
      const r = tsrun(['run', '--rm', '--bundle', b]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const out = r.stdout.trim().split('\n');
      expect(out[0]).toBe(readlinkSync(`/proc/${hpid}/ns/user`));
      expect(out[1]).toBe(readlinkSync(`/proc/${hpid}/ns/mnt`));
      expect(out[2]!.trim().split(/\s+/)).toEqual(readFileSync(`/proc/${hpid}/uid_map`, 'utf8').trim().split(/\s+/));
      expect(out[3]).toBe(`canary-${hpid}`);
      expect(out[4]).toBe('0');
      // root of the joined namespace with its own group and the default capabilities
      expect(out[5]).toMatch(/^Groups:\s+0\s*$/);
      expect(out[6]).toMatch(/^CapEff:\s+00000000a80425fb$/);
      // the bundle named relative to the cwd, as `runc run` is usually called from the bundle
      // directory: setns(2) into a mount namespace moves cwd to its root, so every path in the
      // plan must be absolute. A holder of its own: the run above pivoted the holder's
      // namespace into its rootfs for good (as runc would).
      const br = probe('join-user-mnt-rel', []);
      mkdirSync(join(br, 'rootfs', 'mnt'), { recursive: true });
      const rpid = holder(join(br, 'rootfs'), owned);
      const cfgr = JSON.parse(readFileSync(join(br, 'config.json'), 'utf8'));
      cfgr.linux.namespaces = [{ type: 'pid' }, { type: 'mount', path: `/proc/${rpid}/ns/mnt` }, { type: 'user', path: `/proc/${rpid}/ns/user` }];
      writeFileSync(join(br, 'config.json'), JSON.stringify(cfgr));
      const rel = spawnSync(BIN, ['run', '--rm', '--bundle', '.'], { cwd: br, env: tsrunEnvVars(), encoding: 'utf8' });
      expect(rel.stderr).toBe('');
      expect(rel.stdout.trim().split('\n')[3]).toBe(`canary-${rpid}`);
      // mappings other than the joined namespace's are refused before anything is made, as runc does
      cfg.linux = { ...cfg.linux, uidMappings: [{ containerID: 0, hostID: 300000, size: 65536 }], gidMappings: [{ containerID: 0, hostID: 200000, size: 65536 }] };
      writeFileSync(join(b, 'config.json'), JSON.stringify(cfg));
      const r3 = tsrun(['run', '--rm', '--bundle', b]);
      expect(r3.code).toBe(125);
      expect(r3.stderr).toMatch(/linux\.uidMappings: does not match \/proc\/\d+\/uid_map of the user namespace joined by path \(0 200000 65536\)/);
      expect(leaks()).toEqual([]);
      // a namespace whose setgroups is denied (as `unshare -r` leaves it): no supplementary
      // group at all, not host root's (the init drops them before it joins)
      const bd = probe('join-user-deny', []);
      mkdirSync(join(bd, 'rootfs', 'mnt'), { recursive: true });
      const dpid = holder(join(bd, 'rootfs'), owned, true);
      const cfgd = JSON.parse(readFileSync(join(bd, 'config.json'), 'utf8'));
      cfgd.linux.namespaces = [{ type: 'pid' }, { type: 'mount', path: `/proc/${dpid}/ns/mnt` }, { type: 'user', path: `/proc/${dpid}/ns/user` }, { type: 'network' }];
      // mappings that repeat the joined namespace's are accepted (containerd and CRI-O write both)
      cfgd.linux.uidMappings = cfgd.linux.gidMappings = [{ containerID: 0, hostID: 200000, size: 65536 }];
      writeFileSync(join(bd, 'config.json'), JSON.stringify(cfgd));
      expect(readFileSync(`/proc/${dpid}/setgroups`, 'utf8').trim()).toBe('deny');
      const rd = tsrun(['run', '--rm', '--bundle', bd]);
      expect(rd.stderr).toBe('');
      expect(rd.stdout.trim().split('\n').slice(3, 6)).toEqual([`canary-${dpid}`, '0', 'Groups:\t ']);
      // a path that is not a namespace of that type: the kernel's EINVAL, the field named, nothing left
      const bad = [
        [{ type: 'pid' }, { type: 'mount', path: `/proc/${hpid}/ns/user` }],
        [{ type: 'pid' }, { type: 'mount' }, { type: 'user', path: `/proc/${hpid}/ns/mnt` }],
        [{ type: 'pid' }, { type: 'mount' }, { type: 'user', path: join(b, 'config.json') }],
        [{ type: 'pid' }, { type: 'mount', path: join(base, 'no-such-ns') }],
      ];
      bad.forEach((n, i) => {
        const d = bundle(`join-bad-${i}`, ['/bin/true'], { namespaces: n });
        const x = tsrun(['run', '--rm', '--bundle', d]);
        expect(x.code).toBe(125);
        expect(x.stderr).toMatch(i === 3 ? /linux\.namespaces\[1\]\.path.*ENOENT/ : /linux\.namespaces\[\d\]\.path.*EINVAL/);
        expect(leaks()).toEqual([]);
      });
    } finally {
      for (const pid of owned.reverse()) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
  });
});
