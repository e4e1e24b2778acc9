import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { control } from '../../src/controls/cgroups/index.js';
import { CgroupManager, planCgroup, resolveCgroupPath, type ExecContext } from '../../src/controls/cgroups/manager.js';
import { detectLayout, type CgroupLayout } from '../../src/controls/cgroups/mode.js';
import { blkioWeightToIoWeight, cpuMax, mapResources, sharesToWeight, swapToV2 } from '../../src/controls/cgroups/resources.js';
import { SpecError, UnsupportedError } from '../../src/errors.js';
import type { BuildContext } from '../../src/plan/types.js';
import type { Resources, Spec } from '../../src/spec/types.js';

// Files a fresh cgroup directory holds, per controller (the subset tsrun writes or reads).
const V1_FILES: Record<string, Record<string, string>> = {
  memory: { 'memory.limit_in_bytes': '9223372036854771712', 'memory.memsw.limit_in_bytes': '9223372036854771712', 'memory.soft_limit_in_bytes': '9223372036854771712', 'memory.swappiness': '60', 'memory.oom_control': 'oom_kill_disable 0\nunder_oom 0\noom_kill 0\n', 'memory.failcnt': '0' },
  cpu: { 'cpu.shares': '1024', 'cpu.cfs_period_us': '100000', 'cpu.cfs_quota_us': '-1', 'cpu.idle': '0' },
  cpuacct: { 'cpuacct.usage': '0' },
  cpuset: { 'cpuset.cpus': '', 'cpuset.mems': '' },
  pids: { 'pids.max': 'max', 'pids.current': '0' },
  freezer: { 'freezer.state': 'THAWED' },
  blkio: { 'blkio.throttle.read_bps_device': '', 'blkio.throttle.write_iops_device': '' },
  devices: {},
};
const V2_FILES = {
  'cgroup.subtree_control': '', 'cgroup.kill': '', 'memory.max': 'max', 'memory.swap.max': 'max', 'memory.low': '0', 'memory.events': 'low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n',
  'cpu.max': 'max 100000', 'cpu.weight': '100', 'cpuset.cpus': '', 'cpuset.mems': '', 'pids.max': 'max', 'io.max': '', 'io.weight': 'default 100', 'hugetlb.2MB.max': 'max',
};

interface Fixture {
  root: string;
  layout: CgroupLayout;
  ctx: ExecContext;
}
const cleanup: string[] = [];
afterEach(() => {
  for (const d of cleanup.splice(0)) rmSync(d, { recursive: true, force: true });
});

function populate(dir: string, files: Record<string, string>): void {
  mkdirSync(dir);
  writeFileSync(join(dir, 'cgroup.procs'), '');
  for (const [f, v] of Object.entries(files)) writeFileSync(join(dir, f), v);
}

/** A fake /sys/fs/cgroup in a temp dir plus a mountinfo that points at it. */
function fixture(mode: 'hybrid' | 'v2'): Fixture {
  const root = mkdtempSync(join(tmpdir(), 'tsrun-cg-'));
  cleanup.push(root);
  const filesOf = new Map<string, Record<string, string>>();
  let mi = '';
  let id = 30;
  if (mode === 'hybrid') {
    for (const c of Object.keys(V1_FILES)) {
      const mp = join(root, c);
      filesOf.set(mp, V1_FILES[c]!);
      mi += `${id++} 23 0:${id} / ${mp} rw,relatime - cgroup cgroup rw,${c}\n`;
    }
    const u = join(root, 'unified');
    filesOf.set(u, { 'cgroup.subtree_control': '', 'hugetlb.2MB.max': 'max' });
    mi += `${id++} 23 0:${id} / ${u} rw,relatime - cgroup2 cgroup2 rw\n`;
  } else {
    filesOf.set(root, V2_FILES);
    mi += `${id} 23 0:${id} / ${root} rw - cgroup2 cgroup2 rw,nsdelegate\n`;
  }
  for (const [mp, files] of filesOf) {
    if (mp !== root) mkdirSync(mp);
    writeFileSync(join(mp, 'cgroup.procs'), '');
    for (const [f, v] of Object.entries(files)) writeFileSync(join(mp, f), v);
  }
  // a v1 root cpuset holds the host's CPUs and nodes
  if (mode === 'hybrid') {
    writeFileSync(join(root, 'cpuset/cpuset.cpus'), '0-1\n');
    writeFileSync(join(root, 'cpuset/cpuset.mems'), '0\n');
  }
  const layout = detectLayout(mi, mode === 'v2' ? 'cpuset cpu io memory hugetlb pids rdma misc' : 'hugetlb');
  const hierarchyOf = (dir: string): string => [...filesOf.keys()].filter((mp) => dir.startsWith(mp)).sort((a, b) => b.length - a.length)[0]!;
  const ctx: ExecContext = {
    mkdir: (dir) => populate(dir, filesOf.get(hierarchyOf(dir))!),
    rmdir: (dir) => rmSync(dir, { recursive: true }),
    timeoutMs: 500,
  };
  return { root, layout, ctx };
}

function spec(resources?: Resources, extra: Partial<Spec['linux']> = {}): Spec {
  return {
    ociVersion: '1.2.0',
    process: { user: { uid: 0, gid: 0 }, args: ['sh'], cwd: '/' },
    root: { path: 'rootfs' },
    linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }], ...(resources ? { resources } : {}), ...extra },
  };
}

const read = (p: string): string => readFileSync(p, 'utf8').trim();
const MB = 1024 * 1024;
const dockerish: Resources = {
  memory: { limit: 32 * MB, swap: 64 * MB, reservation: 16 * MB },
  cpu: { shares: 512, quota: 50000, period: 100000, cpus: '1' },
  pids: { limit: 50 },
};

describe('conversions between v1 and v2 values', () => {
  it('cpu.shares → cpu.weight keeps the defaults aligned (1024 → 100) and the range ends', () => {
    expect(sharesToWeight(2)).toBe(1);
    expect(sharesToWeight(1024)).toBe(100);
    expect(sharesToWeight(262144)).toBe(10000);
    expect(sharesToWeight(512)).toBe(59);
    expect(sharesToWeight(2048)).toBe(174);
    expect(sharesToWeight(1)).toBe(1);
    expect(sharesToWeight(0)).toBe(0);
  });
  it('blkio weight → io.weight', () => {
    expect(blkioWeightToIoWeight(10)).toBe(1);
    expect(blkioWeightToIoWeight(1000)).toBe(10000);
    expect(blkioWeightToIoWeight(500)).toBe(4950);
  });
  it('memory+swap (docker, v1 memsw) → swap alone (v2 memory.swap.max)', () => {
    expect(swapToV2(64 * MB, 32 * MB)).toBe(String(32 * MB));
    expect(swapToV2(32 * MB, 32 * MB)).toBe('0'); // --memory-swap = --memory: no swap at all
    expect(swapToV2(-1, 32 * MB)).toBe('max');
    expect(swapToV2(undefined, 32 * MB)).toBeUndefined();
    expect(swapToV2(undefined, -1)).toBe('max');
    expect(() => swapToV2(16 * MB, 32 * MB)).toThrow(SpecError);
    expect(() => swapToV2(64 * MB, undefined)).toThrow(/needs memory.limit/);
  });
  it('cpu.max', () => {
    expect(cpuMax(50000, 100000)).toBe('50000 100000');
    expect(cpuMax(-1, 50000)).toBe('max 50000');
    expect(cpuMax(25000, undefined)).toBe('25000 100000');
    expect(cpuMax(undefined, undefined)).toBeUndefined();
  });
});

describe('resources → files on a v1 (hybrid) fixture tree', () => {
  it('writes docker-style limits into each controller\'s own hierarchy and joins every one', () => {
    const f = fixture('hybrid');
    const m = new CgroupManager(spec(dockerish), 'c1', f.layout, { probe: () => false });
    m.create(f.ctx);
    const d = (c: string): string => join(f.root, c, 'tsrun/c1');
    expect(read(join(d('memory'), 'memory.limit_in_bytes'))).toBe(String(32 * MB));
    expect(read(join(d('memory'), 'memory.memsw.limit_in_bytes'))).toBe(String(64 * MB));
    expect(read(join(d('memory'), 'memory.soft_limit_in_bytes'))).toBe(String(16 * MB));
    expect(read(join(d('cpu'), 'cpu.shares'))).toBe('512');
    expect(read(join(d('cpu'), 'cpu.cfs_period_us'))).toBe('100000');
    expect(read(join(d('cpu'), 'cpu.cfs_quota_us'))).toBe('50000');
    expect(read(join(d('pids'), 'pids.max'))).toBe('50');
    expect(read(join(d('cpuset'), 'cpuset.cpus'))).toBe('1');
    // inherited into both new levels, because a v1 cpuset starts empty
    expect(read(join(d('cpuset'), 'cpuset.mems'))).toBe('0');
    expect(read(join(f.root, 'cpuset/tsrun/cpuset.cpus'))).toBe('0-1');
    // a directory in every hierarchy with controllers, the unified one included
    expect(m.targets.map((t) => t.dir).sort()).toEqual([...Object.keys(V1_FILES), 'unified'].map((c) => join(f.root, c, 'tsrun/c1')).sort());
    // hybrid: the host's cgroup2 root is left alone when no limit needs it
    expect(read(join(f.root, 'unified/cgroup.subtree_control'))).toBe('');
    m.join(4242, f.ctx);
    for (const t of m.targets) expect(read(join(t.dir, 'cgroup.procs'))).toBe('4242');
    writeFileSync(join(d('pids'), 'cgroup.procs'), ''); // the fixture has no processes to kill
    for (const t of m.targets) writeFileSync(join(t.dir, 'cgroup.procs'), '');
    m.destroy(f.ctx);
    for (const t of m.targets) expect(existsSync(t.dir)).toBe(false);
    expect(existsSync(join(f.root, 'pids/tsrun'))).toBe(true); // the shared parent stays, like /docker
  });

  it('drives hugetlb through cgroup2 on hybrid, where v1 does not bind it', () => {
    const f = fixture('hybrid');
    const m = new CgroupManager(spec({ hugepageLimits: [{ pageSize: '2MB', limit: 4 * MB }] }), 'h', f.layout);
    m.create(f.ctx);
    expect(read(join(f.root, 'unified/tsrun/h/hugetlb.2MB.max'))).toBe(String(4 * MB));
    expect(m.plan.steps.some((s) => s.action === 'cgroup' && s.verb === 'enable' && s.value === '+hugetlb')).toBe(true);
  });

  it('refuses a blkio weight when the host has no weight file (no BFQ), naming controller and mode', () => {
    const f = fixture('hybrid');
    expect(() => mapResources({ blockIO: { weight: 300 } }, f.layout, () => false)).toThrow(UnsupportedError);
    expect(() => mapResources({ blockIO: { weight: 300 } }, f.layout, () => false)).toThrow(/blkio controller .*no weight file.*cgroup mode hybrid/);
    const w = mapResources({ blockIO: { weight: 300 } }, f.layout, (_h, file) => file === 'blkio.bfq.weight').writes;
    expect(w).toEqual([{ controller: 'blkio', file: 'blkio.bfq.weight', value: '300', field: 'linux.resources.blockIO.weight' }]);
  });

  it('throttles as major:minor rate lines', () => {
    const f = fixture('hybrid');
    const w = mapResources({ blockIO: { throttleReadBpsDevice: [{ major: 8, minor: 0, rate: 1048576 }], throttleWriteIOPSDevice: [{ major: 8, minor: 16, rate: 10 }] } }, f.layout).writes;
    expect(w.map((x) => `${x.file}=${x.value}`)).toEqual(['blkio.throttle.read_bps_device=8:0 1048576', 'blkio.throttle.write_iops_device=8:16 10']);
  });

  it('refuses cgroup2-only fields for controllers that live in v1', () => {
    const f = fixture('hybrid');
    expect(() => mapResources({ unified: { 'memory.high': '10M' } }, f.layout)).toThrow(/memory controller is not in the cgroup2 hierarchy here \(cgroup mode hybrid/);
  });
});

describe('resources → files on a pure v2 fixture tree', () => {
  it('writes v2 names and converted values, enabling controllers on every ancestor', () => {
    const f = fixture('v2');
    const m = new CgroupManager(spec({ ...dockerish, blockIO: { weight: 500, throttleReadBpsDevice: [{ major: 254, minor: 0, rate: 1000 }] } }), 'c2', f.layout);
    m.create(f.ctx);
    const d = join(f.root, 'tsrun/c2');
    expect(read(join(d, 'memory.max'))).toBe(String(32 * MB));
    expect(read(join(d, 'memory.swap.max'))).toBe(String(32 * MB));
    expect(read(join(d, 'memory.low'))).toBe(String(16 * MB));
    expect(read(join(d, 'cpu.max'))).toBe('50000 100000');
    expect(read(join(d, 'cpu.weight'))).toBe('59');
    expect(read(join(d, 'cpuset.cpus'))).toBe('1');
    expect(read(join(d, 'pids.max'))).toBe('50');
    expect(read(join(d, 'io.weight'))).toBe('default 4950');
    expect(read(join(d, 'io.max'))).toBe('254:0 rbps=1000');
    const enables = m.plan.steps.filter((s) => s.action === 'cgroup' && s.verb === 'enable');
    expect(enables.map((s) => (s as { path: string }).path)).toEqual([f.root, join(f.root, 'tsrun')]);
    expect((enables[0] as { value: string }).value).toBe('+cpuset +cpu +io +memory +pids +hugetlb');
    expect(m.targets).toHaveLength(1);
    // cleanup empties through cgroup.kill on v2
    const kill = m.plan.steps.find((s) => s.action === 'cgroup' && s.verb === 'kill');
    expect(kill?.text).toMatch(/cgroup\.kill/);
    m.destroy(f.ctx);
    expect(existsSync(d)).toBe(false);
  });

  it('names the missing controller and the mode', () => {
    const mi = '26 24 0:23 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n';
    const layout = detectLayout(mi, 'cpu memory');
    expect(() => mapResources({ pids: { limit: 5 } }, layout)).toThrow('linux.resources.pids: the pids cgroup controller is not available on this host (cgroup mode v2; cgroup2 controllers: cpu memory)');
    expect(() => mapResources({ memory: { swappiness: 10 } }, layout)).toThrow(/swappiness.*v2/);
    expect(() => mapResources({ memory: { disableOOMKiller: true } }, layout)).toThrow(UnsupportedError);
  });

  it('writes unified entries verbatim', () => {
    const f = fixture('v2');
    expect(mapResources({ unified: { 'memory.high': '50M' } }, f.layout).writes).toEqual([{ controller: 'memory', file: 'memory.high', value: '50M', field: 'linux.resources.unified.memory.high' }]);
    expect(() => mapResources({ unified: { '../x': '1' } }, f.layout)).toThrow(SpecError);
  });
});

describe('value checks that need no host', () => {
  const layout = detectLayout('26 24 0:23 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n', 'cpu memory pids cpuset io');
  it('memory relations as docker enforces them', () => {
    expect(() => mapResources({ memory: { limit: 32 * MB, swap: 16 * MB } }, layout)).toThrow(/--memory-swap ≥ --memory/);
    expect(() => mapResources({ memory: { swap: 16 * MB } }, layout)).toThrow(/--memory-swap needs --memory/);
    expect(() => mapResources({ memory: { limit: 32 * MB, reservation: 64 * MB } }, layout)).toThrow(/--memory-reservation ≤ --memory/);
    expect(() => mapResources({ memory: { limit: -5 } }, layout)).toThrow(/linux.resources.memory.limit/);
  });
  it('cpu ranges', () => {
    expect(() => mapResources({ cpu: { period: 10 } }, layout)).toThrow(/linux.resources.cpu.period/);
    expect(() => mapResources({ cpu: { cpus: '0-x' } }, layout)).toThrow(/linux.resources.cpu.cpus/);
  });
});

describe('cgroup path', () => {
  it('defaults to /tsrun/<id>, honours --cgroup-parent and linux.cgroupsPath', () => {
    expect(resolveCgroupPath(spec(), 'abc')).toBe('/tsrun/abc');
    const withParent = { ...spec(), annotations: { 'org.tsrun.cgroup-parent': '/myapp/' } };
    expect(resolveCgroupPath(withParent, 'abc')).toBe('/myapp/abc');
    expect(resolveCgroupPath(spec(undefined, { cgroupsPath: '/kubepods/pod1/c' }), 'abc')).toBe('/kubepods/pod1/c');
    expect(() => resolveCgroupPath(spec(undefined, { cgroupsPath: '/a/../../etc' }), 'x')).toThrow(/linux.cgroupsPath: .*leaves the cgroup hierarchy/);
    expect(() => resolveCgroupPath(spec(undefined, { cgroupsPath: 'system.slice:docker:abc' }), 'x')).toThrow(UnsupportedError);
    expect(() => resolveCgroupPath(spec(undefined, { cgroupsPath: '/' }), 'x')).toThrow(/root/);
  });
  it('puts a relative path under tsrun\'s own cgroup in each hierarchy', () => {
    const f = fixture('hybrid');
    const p = planCgroup(spec(undefined, { cgroupsPath: 'ctr' }), 'x', f.layout, { procSelfCgroup: '4:memory:/process_api/b03\n8:pids:/\n0::/\n' });
    expect(p.targets.find((t) => t.hierarchy.controllers.includes('memory'))?.dir).toBe(join(f.root, 'memory/process_api/b03/ctr'));
    expect(p.targets.find((t) => t.hierarchy.controllers.includes('pids'))?.dir).toBe(join(f.root, 'pids/ctr'));
  });
});

describe('the control\'s plan steps', () => {
  function ctx(layout: CgroupLayout, s: Spec): BuildContext {
    return { id: 'p1', spec: s, rootfs: '/run/tsrun/p1/rootfs', containerDir: '/run/tsrun/p1', host: { capEff: 0n, lsms: [], ncpu: 2, cgroupMode: layout.mode, cgroupLayout: layout }, terminal: false, waitStart: false };
  }
  const sysMount = [{ destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['ro'] }];

  it('v2 with a private cgroup namespace: mount cgroup2 read-only (the unshare is the namespaces control\'s)', () => {
    const layout = detectLayout('26 24 0:23 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n', 'cpu memory pids');
    const s = { ...spec({ pids: { limit: 50 } }, { namespaces: [{ type: 'pid' }, { type: 'cgroup' }] }), mounts: sysMount };
    const steps = control.steps(ctx(layout, s));
    const phases = steps.map((x) => `${x.where}:${x.phase}:${x.where === 'child' ? x.op : (x as { verb: string }).verb}`);
    expect(phases).toEqual([
      'parent:prepare:create', 'parent:prepare:enable', 'parent:prepare:enable', 'parent:prepare:set',
      'parent:after-clone:clone-into', 'parent:cleanup:oom-check', 'parent:cleanup:kill', 'parent:cleanup:remove', 'parent:cleanup:remove', 'parent:cleanup:remove',
      'child:mounts:MOUNT',
    ]);
    const mount = steps.at(-1)!;
    expect(mount.where === 'child' && mount.strs).toEqual(['cgroup2', '/run/tsrun/p1/rootfs/sys/fs/cgroup', 'cgroup2', '']);
    expect(mount.text).toMatch(/MS_RDONLY/);
    expect(steps.find((x) => x.where === 'parent' && x.phase === 'prepare' && (x as { verb: string }).verb === 'set')?.text).toBe('echo "50" > /sys/fs/cgroup/tsrun/p1/pids.max');
  });

  it('hybrid: tmpfs with one read-only cgroup mount per hierarchy, then the tmpfs read-only', () => {
    const layout = detectLayout(readFileSync(join(__dirname, 'fixtures/cgroups/hybrid.mountinfo'), 'utf8'), 'hugetlb');
    const s = { ...spec(undefined, { namespaces: [{ type: 'cgroup' }] }), mounts: sysMount };
    const child = control.steps(ctx(layout, s)).filter((x) => x.where === 'child');
    const mounts = child.filter((x) => x.op === 'MOUNT').map((x) => `${x.strs[2]}:${x.strs[3]}`);
    expect(mounts).toEqual(['tmpfs:mode=755', 'cgroup:cpu', 'cgroup:cpuacct', 'cgroup:cpuset', 'cgroup:memory', 'cgroup:devices', 'cgroup:freezer', 'cgroup:blkio', 'cgroup:pids', 'cgroup2:', ':']);
    expect(child.at(-1)?.text).toMatch(/MS_REMOUNT\|MS_RDONLY/);
  });

  it('v1 co-mounted controllers get per-controller symlinks; host cgroupns bind-mounts own dirs', () => {
    const layout = detectLayout(readFileSync(join(__dirname, 'fixtures/cgroups/v1.mountinfo'), 'utf8'), '');
    const s = { ...spec(), mounts: [{ destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['ro'] }] };
    const child = control.steps(ctx(layout, s)).filter((x) => x.where === 'child');
    expect(child.some((x) => x.op === 'UNSHARE')).toBe(false);
    expect(child.filter((x) => x.op === 'SYMLINK').map((x) => x.strs.join('→'))).toEqual([
      'cpu,cpuacct→/run/tsrun/p1/rootfs/sys/fs/cgroup/cpu', 'cpu,cpuacct→/run/tsrun/p1/rootfs/sys/fs/cgroup/cpuacct',
      'net_cls,net_prio→/run/tsrun/p1/rootfs/sys/fs/cgroup/net_cls', 'net_cls,net_prio→/run/tsrun/p1/rootfs/sys/fs/cgroup/net_prio',
    ]);
    const binds = child.filter((x) => x.op === 'MOUNT' && x.text.includes('MS_BIND'));
    expect(binds[0]?.strs.slice(0, 2)).toEqual(['/sys/fs/cgroup/cpu,cpuacct/tsrun/p1', '/run/tsrun/p1/rootfs/sys/fs/cgroup/cpu,cpuacct']);
  });

  it('validate refuses CPUs the host\'s root cpuset lacks, before anything is created', () => {
    const f = fixture('hybrid');
    expect(() => control.validate!(ctx(f.layout, spec({ cpu: { cpus: '3' } })))).toThrow('--cpuset-cpus (linux.resources.cpu.cpus): 3 not available on this host (available: 0-1)');
    expect(() => control.validate!(ctx(f.layout, spec({ cpu: { mems: '1' } })))).toThrow(/--cpuset-mems .*1 not available/);
    expect(existsSync(join(f.root, 'cpuset/tsrun'))).toBe(false);
  });
});
