// Reliability at the edges (issue 12, items 9 and 3), through bin/tsrun on the real kernel:
//  - a malformed or unappliable bundle ends in exit 125 and ONE line on stderr naming the
//    field, with nothing left behind (no state dir, no cgroup, no mount, no process);
//  - a read-only state root and a full data root give one line naming the path and the errno;
//  - the container's command line and environment are limited only by the kernel's limits
//    (MAX_ARG_STRLEN, ARG_MAX), and going past them says E2BIG.
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeKernel, leaks as allLeaks, testEnv, tsrun } from './helpers.js';
import { ALL_CAPS, capBit } from '../../src/controls/capabilities.js';
import { cgroupTargets } from '../../src/controls/cgroups/manager.js';
import { hostLayout } from '../../src/controls/cgroups/mode.js';

const maskOf = (names: string[]) => names.reduce((m, n) => m | (1n << BigInt(capBit(n))), 0n);

const CG_PARENT = `tsrun-validate-${process.pid}`;

// leaks() sees every tsrun-init on the machine, and other suites may run at the same time:
// every container of this file is put below CG_PARENT (bundles: cgroupsPath, runs:
// --cgroup-parent), and only inits in it count as this file's leaks.
let baseline = new Set<string>();
function mine(line: string): boolean {
  const pid = /^process: (\d+) /.exec(line)?.[1];
  if (!pid) return true;
  try {
    return readFileSync(`/proc/${pid}/cgroup`, 'utf8').includes(`/${CG_PARENT}/`);
  } catch {
    return false; // exited meanwhile
  }
}
const leaks = () => allLeaks().filter((l) => !baseline.has(l) && mine(l));

/**
 * CG_PARENT in each hierarchy, where tsrun puts it: a relative cgroup path is relative to
 * tsrun's own cgroup there (this process's: where a test runner is not at the root, e.g. a
 * memory cgroup per job, /sys/fs/cgroup/<c>/CG_PARENT is not the place).
 */
const parentDirs = () => cgroupTargets(hostLayout(), CG_PARENT).map((t) => t.dir);

/** Cgroups of this file's containers (below CG_PARENT) in any hierarchy: none may outlive a test. */
function cgroupDirs(): string[] {
  const found: string[] = [];
  for (const p of parentDirs()) {
    if (!existsSync(p)) continue;
    for (const d of readdirSync(p, { withFileTypes: true })) if (d.isDirectory()) found.push(join(p, d.name));
  }
  return found;
}

/** The parent a successful run leaves (tsrun removes only the cgroup it made for the container). */
function removeCgroupParent(): void {
  for (const p of parentDirs()) {
    try {
      rmdirSync(p);
    } catch {
      /* absent, or a leaked child keeps it (reported by cgroupDirs) */
    }
  }
}

function bundle(edit: (s: Record<string, any>) => void): string {
  const e = testEnv();
  const dir = mkdtempSync(join(tmpdir(), 'tsrun-validate-'));
  cpSync(e.rootfs.busybox, join(dir, 'rootfs'), { recursive: true, verbatimSymlinks: true });
  const s: Record<string, any> = {
    ociVersion: '1.2.0',
    process: { args: ['/bin/true'], cwd: '/', user: { uid: 0, gid: 0 }, env: ['PATH=/bin'] },
    root: { path: 'rootfs' },
    mounts: [{ destination: '/proc', type: 'proc', source: 'proc' }],
    linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }], cgroupsPath: `${CG_PARENT}/c`, resources: { pids: { limit: 50 } } },
  };
  edit(s);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(s));
  return dir;
}

/** exit 125, exactly one line, no stack, naming `field`; nothing left behind. */
function expectRefused(args: string[], field: RegExp): void {
  const r = tsrun(args);
  expect(r.code, r.stderr).toBe(125);
  expect(r.stderr).not.toMatch(/internal error|\n\s+at /);
  expect(r.stderr.trimEnd().split('\n'), r.stderr).toHaveLength(1);
  expect(r.stderr).toMatch(field);
  expect(leaks()).toEqual([]);
  expect(cgroupDirs()).toEqual([]);
}

function withMount(opts: string, fn: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'tsrun-validate-mnt-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', opts, 'tsrun-validate', dir]);
  try {
    fn(dir);
  } finally {
    execFileSync('umount', [dir]);
    rmSync(dir, { recursive: true, force: true });
  }
}

describeKernel('malformed and unappliable bundles, full and read-only roots', () => {
  beforeAll(() => {
    baseline = new Set(allLeaks());
  });
  afterAll(() => {
    const left = [...leaks(), ...cgroupDirs()];
    removeCgroupParent();
    expect(left).toEqual([]);
  });

  it('the valid base bundle runs (so the refusals below are about the one field)', () => {
    const dir = bundle(() => {});
    try {
      const r = tsrun(['run', '--rm', '--bundle', dir]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  const CASES: [string, (s: Record<string, any>) => void, RegExp][] = [
    ['env is a string', (s) => (s.process.env = 'PATH=/bin'), /^tsrun: config\.json: process\.env: must be array \(got "PATH=\/bin"\)$/m],
    ['namespace path is a number', (s) => (s.linux.namespaces[0].path = 5), /config\.json: linux\.namespaces\[0\]\.path: must be string/],
    ['mount options is a string', (s) => (s.mounts[0].options = 'ro'), /config\.json: mounts\[0\]\.options: must be array/],
    ['cgroupsPath is a number', (s) => (s.linux.cgroupsPath = 7), /config\.json: linux\.cgroupsPath: must be string/],
    ['a NUL in args', (s) => (s.process.args = ['/bin/echo', 'a\u0000b']), /config\.json: process\.args\[1\]: .*NUL/],
    ['null in mounts', (s) => (s.mounts = [null]), /config\.json: mounts\[0\]: must be object \(got null\)/],
    ['100k additionalGids', (s) => (s.process.user.additionalGids = Array.from({ length: 100_000 }, (_, i) => i + 1)), /process\.user\.additionalGids: .*NGROUPS_MAX/],
    ['cpuset 0-99999999', (s) => (s.linux.resources.cpu = { cpus: '0-99999999' }), /linux\.resources\.cpu\.cpus: /],
    ['apparmorProfile without AppArmor', (s) => (s.process.apparmorProfile = 'docker-default'), /process\.apparmorProfile[: ].*AppArmor (is not active|support)/],
    ['hostname without a UTS namespace', (s) => (s.hostname = 'box'), /hostname: .*uts/],
    ['linux.resources.network', (s) => (s.linux.resources.network = { classID: 1 }), /linux\.resources\.network: /],
  ];
  it.each(CASES)('run --bundle, %s: exit 125, one line, nothing left', (_what, edit, field) => {
    const dir = bundle(edit);
    try {
      expectRefused(['run', '--rm', '--bundle', dir], field);
      // OCI create (what engines call) refuses the same way, before any state exists
      expectRefused(['create', '--bundle', dir, `v${process.pid}`], field);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('capabilities: --privileged lists in inspect what the container has; a bundle asking for more is refused', () => {
    const status = readFileSync('/proc/self/status', 'utf8');
    const own = (k: string) => BigInt(`0x${new RegExp(`^${k}:\\s*([0-9a-f]+)$`, 'm').exec(status)![1]}`);
    const canGive = own('CapEff') & own('CapBnd');
    const r = tsrun(['run', '-d', '--privileged', '--cgroup-parent', CG_PARENT, 'busybox', 'sleep', '30']);
    expect(r.code, r.stderr).toBe(0);
    const id = r.stdout.trim();
    try {
      const caps = JSON.parse(tsrun(['inspect', id]).stdout)[0].Process.Capabilities;
      expect(maskOf(caps.bounding)).toBe(canGive);
      expect(maskOf(caps.permitted)).toBe(canGive);
      // and the kernel agrees: the container's init has exactly that bounding set
      const pid = JSON.parse(tsrun(['state', id]).stdout).pid;
      expect(BigInt(`0x${/^CapBnd:\s*([0-9a-f]+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]}`)).toBe(canGive);
    } finally {
      tsrun(['rm', '-f', id]);
    }
    const lacking = ALL_CAPS.filter((c) => !((canGive >> BigInt(capBit(c))) & 1n));
    // here root lacks CAP_SYS_RESOURCE (docs/capabilities.md); where it lacks nothing there is nothing to refuse
    if (lacking.length) {
      const dir = bundle((s) => (s.process.capabilities = { bounding: [...ALL_CAPS], permitted: [...ALL_CAPS], effective: [...ALL_CAPS] }));
      try {
        expectRefused(['run', '--rm', '--bundle', dir], new RegExp(`process\\.capabilities: ${lacking[0]}.* requested but tsrun itself does not hold`));
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
  });

  it('a read-only state root: one line naming the path and EROFS', () => {
    withMount('ro,size=1m', (ro) => {
      const r = tsrun(['run', '--rm', '--cgroup-parent', CG_PARENT, 'busybox', 'true'], { env: { TSRUN_ROOT: ro } });
      expect(r.code, r.stderr).toBe(125);
      expect(r.stderr).not.toMatch(/internal error|\n\s+at /);
      expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
      expect(r.stderr).toContain(ro);
      expect(r.stderr).toContain('EROFS');
      expect(leaks()).toEqual([]);
    });
  });

  it('import into a full data root: one line naming the path and ENOSPC, nothing partial left', () => {
    const e = testEnv();
    const src = mkdtempSync(join(tmpdir(), 'tsrun-validate-img-'));
    try {
      // a 3 MB incompressible rootfs tarball: its copy into blobs/ fills a 1 MB data root
      cpSync(e.rootfs.busybox, join(src, 'root'), { recursive: true, verbatimSymlinks: true });
      writeFileSync(join(src, 'root', 'big'), Buffer.alloc(3 << 20, 0x5a).map((_, i) => (i * 2654435761) >>> 24));
      execFileSync('tar', ['-C', join(src, 'root'), '-cf', join(src, 'img.tar'), '.']);
      // a gzip of 4 MB of zeros and busybox, about 1 MB: the blob fits in 2 MB, its unpacked layer does not
      rmSync(join(src, 'root', 'big'));
      writeFileSync(join(src, 'root', 'zeros'), Buffer.alloc(4 << 20));
      execFileSync('tar', ['-C', join(src, 'root'), '-czf', join(src, 'img.tgz'), '.']);
      for (const [file, size] of [['img.tar', '1m'], ['img.tgz', '2m']] as const) {
        withMount(`size=${size}`, (data) => {
          const r = tsrun(['import', join(src, file), 'big'], { env: { TSRUN_DATA: data } });
          expect(r.code, r.stderr).toBe(125);
          expect(r.stderr).not.toMatch(/internal error|\n\s+at /);
          expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
          expect(r.stderr).toContain('ENOSPC');
          expect(r.stderr).toContain(data);
          // no blob, layer, temporary file or index left: at most empty directories
          const files = execFileSync('find', [data, '-not', '-type', 'd'], { encoding: 'utf8' }).trim();
          expect(files, file).toBe('');
          expect(tsrun(['images'], { env: { TSRUN_DATA: data } }).stdout).not.toContain('big');
        });
      }
    } finally {
      rmSync(src, { recursive: true, force: true });
    }
  });
});

describeKernel('arguments and environment: only the kernel\'s limits', () => {
  beforeAll(() => {
    baseline = new Set(allLeaks());
  });
  afterAll(() => {
    const left = [...leaks(), ...cgroupDirs()];
    removeCgroupParent();
    expect(left).toEqual([]);
  });

  it('10,000 arguments reach the command', () => {
    const args = Array.from({ length: 10_000 }, (_, i) => String(i + 1));
    const r = tsrun(['run', '--rm', '--cgroup-parent', CG_PARENT, 'busybox', 'sh', '-c', 'echo $#; echo "$1 ${10000}"', 'x', ...args]);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('10000\n1 10000\n');
    expect(r.code).toBe(0);
  });

  it('1,000 -e variables are in the container\'s environment', () => {
    const flags = Array.from({ length: 1000 }, (_, i) => ['-e', `V${i}=value${i}`]).flat();
    const r = tsrun(['run', '--rm', '--cgroup-parent', CG_PARENT, ...flags, 'busybox', 'sh', '-c', 'env | grep -c "^V[0-9]*=value"; echo "$V0 $V999"']);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('1000\nvalue0 value999\n');
    expect(r.code).toBe(0);
  });

  it('a bundle with 1,000 env entries and 10,000 args', () => {
    const dir = bundle((s) => {
      s.process.args = ['/bin/sh', '-c', 'echo $# $(env | grep -c "^W")', 'x', ...Array.from({ length: 10_000 }, (_, i) => `a${i}`)];
      s.process.env = ['PATH=/bin', ...Array.from({ length: 1000 }, (_, i) => `W${i}=${i}`)];
    });
    try {
      const r = tsrun(['run', '--rm', '--bundle', dir]);
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe('10000 1000\n');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect(cgroupDirs()).toEqual([]);
  });

  it('one 100,000-byte argument arrives intact', () => {
    const big = 'ab'.repeat(50_000);
    const r = tsrun(['run', '--rm', '--cgroup-parent', CG_PARENT, 'busybox', 'sh', '-c', 'echo ${#1}; [ "$1" = "$2" ] && echo same', 'x', big, big]);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('100000\nsame\n');
  });

  // Past the limits, through bundles: tsrun's own command line is under the same limits, so
  // a 200,000-byte argument cannot even reach bin/tsrun.
  it('past MAX_ARG_STRLEN (131072 bytes in one string): E2BIG, exit 125, one line', () => {
    const dir = bundle((s) => (s.process.args = ['/bin/echo', 'x'.repeat(200_000)]));
    try {
      const r = tsrun(['run', '--rm', '--bundle', dir]);
      expect(r.code, r.stderr).toBe(125);
      expect(r.stderr).not.toMatch(/internal error|\n\s+at /);
      expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(/exec "\/bin\/echo": E2BIG \(Argument list too long\)/);
      expect(Buffer.byteLength(r.stderr)).toBeLessThan(600);
      expect(leaks()).toEqual([]);
      expect(cgroupDirs()).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('past ARG_MAX (a quarter of the stack limit in total): E2BIG', () => {
    // 40 strings of 100,000 bytes: each under MAX_ARG_STRLEN, 4 MB in total > 8 MB / 4
    const dir = bundle((s) => (s.process.args = ['/bin/true', ...Array.from({ length: 40 }, () => 'y'.repeat(100_000))]));
    try {
      const r = tsrun(['run', '--rm', '--bundle', dir]);
      expect(r.code, r.stderr).toBe(125);
      expect(r.stderr).toMatch(/exec "\/bin\/true": E2BIG/);
      expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
      expect(leaks()).toEqual([]);
      expect(cgroupDirs()).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
