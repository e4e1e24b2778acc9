import { describe, expect, it } from 'vitest';
import { CONTAINER_CHECKS, hostBinds } from '../../src/audit/checks.js';
import { cgroupFiles, hostPathOf, parseIdMap, parseLimits, parseMountLines, parseStatus, type HostView, type ProcessFacts } from '../../src/audit/facts.js';
import { HOST_CHECKS, parseApiSockets, parseListening, type HostFacts } from '../../src/audit/host.js';
import { auditContainers, auditJson, renderAudit, score } from '../../src/audit/index.js';
import { detectLayout, parseProcCgroup } from '../../src/controls/cgroups/mode.js';

// Fixture text in the kernel's formats (proc(5)), shaped like this hybrid host's.
const HOST_MOUNTINFO = [
  '27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw',
  '22 27 0:21 / /proc rw,relatime shared:5 - proc proc rw',
  '23 27 0:22 / /sys rw,relatime shared:6 - sysfs sysfs rw',
  '24 27 0:6 / /dev rw,relatime shared:2 - devtmpfs devtmpfs rw',
  '30 23 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw',
  '31 23 0:28 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids',
  '32 23 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory',
  '33 23 0:30 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct',
  '34 23 0:31 / /sys/fs/cgroup/devices rw - cgroup cgroup rw,devices',
  '90 27 0:77 / /var/lib/tsrun/containers/abc/merged rw - overlay overlay rw,lowerdir=x',
].join('\n');

const CONTAINER_MOUNTINFO = (extra: string[] = [], rootOpts = 'rw') =>
  [
    `93 60 0:77 / / ${rootOpts},relatime - overlay overlay rw,lowerdir=x`,
    '94 93 0:80 / /proc rw,nosuid,nodev,noexec - proc proc rw',
    '95 93 0:81 / /dev rw,nosuid - tmpfs tmpfs rw,mode=755',
    '96 93 0:22 / /sys ro,nosuid,nodev,noexec - sysfs sysfs ro',
    '97 93 254:0 /var/lib/tsrun/containers/abc/hostname /etc/hostname rw - ext4 /dev/vda rw',
    ...extra,
  ].join('\n');

const STATUS = (o: { capBnd?: string; nnp?: 0 | 1; seccomp?: 0 | 2 } = {}) =>
  [
    'Name:\tsleep',
    'Uid:\t0\t0\t0\t0',
    'CapPrm:\t00000000a80425fb',
    'CapEff:\t00000000a80425fb',
    `CapBnd:\t${o.capBnd ?? '00000000a80425fb'}`,
    `NoNewPrivs:\t${o.nnp ?? 0}`,
    `Seccomp:\t${o.seccomp ?? 2}`,
    'Seccomp_filters:\t1',
  ].join('\n');

const LIMITS = (nofile: number) =>
  [
    'Limit                     Soft Limit           Hard Limit           Units     ',
    'Max processes             96367                96367                processes ',
    `Max open files            ${nofile}                ${nofile}                files     `,
  ].join('\n');

const HOST_NS = { net: 'net:[4026531833]', pid: 'pid:[4026531836]', ipc: 'ipc:[4026531839]', uts: 'uts:[4026531838]', user: 'user:[4026531837]', mnt: 'mnt:[4026531841]', cgroup: 'cgroup:[4026531835]' };

const host: HostView = {
  ns: HOST_NS,
  mounts: parseMountLines(HOST_MOUNTINFO),
  capLastCap: 40,
  capBnd: 0x1fffeffffffn,
  lsms: ['capability', 'landlock'],
  limits: parseLimits(LIMITS(65536)),
  cgroupPaths: { pids: '/', memory: '/', cpu: '/', devices: '/' },
};

function facts(o: { mounts?: string[]; rootOpts?: string; status?: Parameters<typeof STATUS>[0]; ns?: Partial<typeof HOST_NS>; pids?: string; memory?: string; cpu?: string; devices?: string; nofile?: number; uidMap?: string } = {}): ProcessFacts {
  const path = '/tsrun/abc';
  const cg = (ctrl: string, file: string, value: string) => ({ file: `/sys/fs/cgroup/${ctrl}${path}/${file}`, value });
  return {
    pid: 4242,
    status: parseStatus(STATUS(o.status)),
    uidMap: parseIdMap(o.uidMap ?? '         0          0 4294967295\n'),
    mounts: parseMountLines(CONTAINER_MOUNTINFO(o.mounts, o.rootOpts)),
    ns: { net: 'net:[1]', pid: 'pid:[2]', ipc: 'ipc:[3]', uts: 'uts:[4]', user: HOST_NS.user, mnt: 'mnt:[6]', cgroup: 'cgroup:[7]', ...o.ns },
    cgroup: {
      paths: { pids: path, memory: path, cpu: path, devices: path },
      pids: cg('pids', 'pids.max', o.pids ?? 'max'),
      memory: cg('memory', 'memory.limit_in_bytes', o.memory ?? '9223372036854771712'),
      cpu: cg('cpu,cpuacct', 'cpu.shares', o.cpu ?? '1024'),
      devices: cg('devices', 'devices.list', o.devices ?? 'c 1:3 rwm\nc 1:5 rwm\nc *:* m\nb *:* m'),
    },
    limits: parseLimits(LIMITS(o.nofile ?? 65536)),
    lsm: {},
  };
}

function verdict(id: string, f: ProcessFacts) {
  const c = CONTAINER_CHECKS.find((x) => x.id === id);
  if (!c) throw new Error(`no check ${id}`);
  return c.run(f, host);
}

describe('kernel fact parsers', () => {
  it('status: capabilities, no_new_privs, seccomp', () => {
    const s = parseStatus(STATUS({ nnp: 1, seccomp: 2 }));
    expect(s.capBnd).toBe(0xa80425fbn);
    expect(s.noNewPrivs).toBe(true);
    expect(s.seccomp).toBe(2);
    expect(s.seccompFilters).toBe(1);
    expect(s.uid).toEqual([0, 0, 0, 0]);
  });

  it('mountinfo keeps the device, the bind root and the propagation fields; octal escapes decoded', () => {
    const [m] = parseMountLines('97 93 254:0 /tmp/a\\040b /x\\040y rw shared:3 master:1 - ext4 /dev/vda rw');
    expect(m).toMatchObject({ dev: '254:0', root: '/tmp/a b', mountPoint: '/x y', optional: ['shared:3', 'master:1'], fsType: 'ext4' });
  });

  it('a bind mount is traced back to the host path it shows', () => {
    const [etc] = parseMountLines('98 93 254:0 /etc /h/etc ro - ext4 /dev/vda rw');
    expect(hostPathOf(etc!, host.mounts)).toBe('/etc');
    const [own] = parseMountLines('95 93 0:81 / /dev rw - tmpfs tmpfs rw');
    expect(hostPathOf(own!, host.mounts)).toBeUndefined();
    // sysfs of a shared network namespace is the host's superblock at the same place: not a bind
    expect(hostBinds(parseMountLines(CONTAINER_MOUNTINFO()), host.mounts).map((b) => b.hostPath)).toEqual(['/var/lib/tsrun/containers/abc/merged', '/var/lib/tsrun/containers/abc/hostname']);
  });

  it('cgroup files per controller on a hybrid layout (v1 controllers, cgroup2 unified)', () => {
    const layout = detectLayout(HOST_MOUNTINFO, '');
    const lines = parseProcCgroup('12:pids:/tsrun/abc\n11:memory:/tsrun/abc\n10:cpu,cpuacct:/tsrun/abc\n9:devices:/tsrun/abc\n0::/\n');
    expect(cgroupFiles(layout, lines).files).toEqual({
      memory: '/sys/fs/cgroup/memory/tsrun/abc/memory.limit_in_bytes',
      cpu: '/sys/fs/cgroup/cpu,cpuacct/tsrun/abc/cpu.shares',
      pids: '/sys/fs/cgroup/pids/tsrun/abc/pids.max',
      devices: '/sys/fs/cgroup/devices/tsrun/abc/devices.list',
    });
  });

  it('cgroup files on pure v2: memory.max, cpu.weight, pids.max, and no devices list', () => {
    const layout = detectLayout('30 23 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw', 'cpu memory pids io');
    expect(cgroupFiles(layout, parseProcCgroup('0::/tsrun/abc\n')).files).toEqual({
      memory: '/sys/fs/cgroup/tsrun/abc/memory.max',
      cpu: '/sys/fs/cgroup/tsrun/abc/cpu.weight',
      pids: '/sys/fs/cgroup/tsrun/abc/pids.max',
    });
  });

  it('limits and listening ports', () => {
    expect(parseLimits(LIMITS(1024)).nofile).toEqual({ soft: '1024', hard: '1024' });
    const tcp = '  sl  local_address rem_address   st\n   0: 00000000:0947 00000000:0000 0A 0\n   1: 0100007F:9E9F 0100007F:A3E0 06 0\n';
    expect(parseListening(tcp)).toEqual([2375]);
    const unix = 'Num       RefCount Protocol Flags    Type St Inode Path\n0000: 00000002 00000000 00010000 0001 01 123 /run/containerd/containerd.sock\n0001: 00000003 00000000 00000000 0001 03 124 /run/docker.sock\n0002: 00000002 00000000 00010000 0001 01 125 /run/other.sock\n';
    expect(parseApiSockets(unix)).toEqual(['/run/containerd/containerd.sock']);
  });
});

describe('container checks: one fact set that passes and one that fails', () => {
  const cases: [string, Parameters<typeof facts>[0], Parameters<typeof facts>[0], RegExp][] = [
    ['5.3', {}, { status: { capBnd: '00000000a82425fb' } }, /SYS_ADMIN/],
    ['5.4', {}, { status: { capBnd: '000001fffeffffff', seccomp: 0 }, devices: 'a *:* rwm' }, /every capability.*no seccomp.*every device/],
    ['5.5', { mounts: ['98 93 254:0 /tmp/x /h/etc ro - ext4 /dev/vda rw'] }, { mounts: ['98 93 254:0 /etc /h/etc ro - ext4 /dev/vda rw'] }, /host \/etc on \/h\/etc \(ro\)/],
    ['5.9', {}, { ns: { net: HOST_NS.net } }, /shares the host's net namespace/],
    ['5.10', { memory: '67108864' }, {}, /unlimited/],
    ['5.11', { cpu: '512' }, { cpu: '1024' }, /default/],
    ['5.12', { rootOpts: 'ro' }, { rootOpts: 'rw' }, /overlay rw/],
    ['5.15', {}, { ns: { pid: HOST_NS.pid } }, /pid namespace/],
    ['5.16', {}, { ns: { ipc: HOST_NS.ipc } }, /ipc namespace/],
    ['5.17', {}, { devices: 'c 1:3 rwm\nb 8:0 rwm' }, /b 8:0 rwm/],
    ['5.19', {}, { mounts: ['99 93 0:90 / /shared rw shared:7 - tmpfs tmpfs rw'] }, /\/shared \(shared:7\)/],
    ['5.20', {}, { ns: { uts: HOST_NS.uts } }, /uts namespace/],
    ['5.21', {}, { status: { seccomp: 0 } }, /Seccomp: 0/],
    ['5.25', { status: { nnp: 1 } }, {}, /NoNewPrivs: 0/],
    ['5.28', { pids: '50' }, { pids: 'max' }, /pids.max = max/],
    ['5.30', { ns: { user: 'user:[9]' }, uidMap: '0 100000 65536' }, {}, /container root is host root/],
    ['5.31', {}, { mounts: ['99 93 254:0 /tmp/t/docker.sock /var/run/docker.sock rw - ext4 /dev/vda rw'] }, /host \/tmp\/t\/docker.sock on \/var\/run\/docker.sock/],
  ];
  for (const [id, good, bad, why] of cases) {
    it(`${id}: PASS, then WARN`, () => {
      expect(verdict(id, facts(good)).status).toBe('PASS');
      const v = verdict(id, facts(bad));
      expect(v.status).toBe('WARN');
      expect(v.detail).toMatch(why);
    });
  }

  it('5.31: a tmpfs of the container named docker.sock is no host socket', () => {
    expect(verdict('5.31', facts({ mounts: ['99 93 0:95 / /run/docker.sock rw - tmpfs tmpfs rw'] })).status).toBe('PASS');
  });

  it('5.1/5.2: NOTE when AppArmor/SELinux are not active', () => {
    expect(verdict('5.1', facts()).status).toBe('NOTE');
    expect(verdict('5.2', facts()).status).toBe('NOTE');
  });

  it('5.18: INFO with inherited limits, PASS when the container has its own', () => {
    expect(verdict('5.18', facts()).status).toBe('INFO');
    expect(verdict('5.18', facts({ nofile: 1024 }))).toMatchObject({ status: 'PASS', detail: expect.stringMatching(/nofile=1024:1024.*differs.*nofile/) });
  });

  it('5.24: a process in the host\'s own cgroup warns', () => {
    const f = facts();
    expect(verdict('5.24', f).status).toBe('PASS');
    f.cgroup.paths = { pids: '/', memory: '/' };
    expect(verdict('5.24', f).status).toBe('WARN');
  });

  it('every check carries both numberings: current = workshop + 1 in section 5', () => {
    for (const c of CONTAINER_CHECKS) {
      const [s, n] = c.id.split('.').map(Number);
      expect(c.idCurrent).toBe(`${s}.${n! + 1}`);
    }
  });
});

describe('host checks, report and score', () => {
  const base: HostFacts = { config: { path: '/etc/tsrun/config.json', found: false, config: {}, warnings: [] }, networks: [], listening: [], apiSockets: [], roots: [{ flag: '--root', path: '/run/tsrun', uid: 0, mode: 0o40700 }], uid: 0 };
  const run = (f: HostFacts) => Object.fromEntries(HOST_CHECKS.map((c) => [`${c.id}/${c.idCurrent}`, c.run(f, host).status]));

  it('without a config: userns-remap, no-new-privileges and icc warn; live restore passes', () => {
    expect(run(base)).toMatchObject({ '2.1/2.2': 'WARN', '2.8/2.9': 'WARN', '2.17/2.14': 'WARN', '2.13/2.15': 'PASS', '2.6/2.7': 'PASS', '2.7/2.8': 'INFO', '2.15/2.17': 'PASS', '-/-': 'PASS' });
  });

  it('the workshop daemon.json makes them pass; a Docker API on 2375 and a group-writable root warn', () => {
    const good = { ...base, config: { ...base.config, found: true, config: { 'userns-remap': 'default', 'no-new-privileges': true, icc: false, 'default-ulimits': { nofile: { Name: 'nofile', Soft: 1024, Hard: 2048 } } } } };
    expect(run(good)).toMatchObject({ '2.1/2.2': 'PASS', '2.8/2.9': 'PASS', '2.17/2.14': 'PASS', '2.7/2.8': 'PASS' });
    const bad = { ...good, listening: [2375], roots: [{ flag: '--data-root', path: '/d', uid: 0, mode: 0o40775 }], config: { ...good.config, config: { ...good.config.config, 'seccomp-profile': 'unconfined' } } };
    expect(run(bad)).toMatchObject({ '2.6/2.7': 'WARN', '-/-': 'WARN', '2.15/2.17': 'WARN' });
  });

  it('renders docker-bench style lines with both ids, a score, and JSON with the same fields', () => {
    const results = auditContainers([{ label: 'web', facts: facts({ pids: '50' }) }], host);
    const text = renderAudit(results);
    expect(text).toMatch(/^\[PASS\] 5\.28 \(5\.29\) - Ensure that the PIDs cgroup limit is used\n {7}\* \/sys\/fs\/cgroup\/pids\/tsrun\/abc\/pids\.max = 50$/m);
    const s = score(results);
    expect(text).toContain(`[INFO] Checks: ${s.checks}\n[INFO] Score: ${s.score}\n`);
    expect(s.score).toBe(results.filter((r) => r.status === 'PASS').length - results.filter((r) => r.status === 'WARN').length);
    const json = JSON.parse(auditJson(results)) as Record<string, unknown>[];
    expect(json.find((r) => r.id === '5.28')).toEqual({ id: '5.28', idCurrent: '5.29', title: 'Ensure that the PIDs cgroup limit is used', status: 'PASS', detail: '/sys/fs/cgroup/pids/tsrun/abc/pids.max = 50', container: 'web', pid: 4242 });
  });
});
