import { afterEach, describe, expect, it } from 'vitest';
import { flags, setStatBlockDevice, statBlockDevice } from '../../src/controls/cgroups/flags.js';
import { UsageError } from '../../src/errors.js';
import type { Spec } from '../../src/spec/types.js';
import { parseBytes, parseCpuList, formatCpuList, parseNanoCpus } from '../../src/controls/cgroups/units.js';

const env = { rootfs: '/nonexistent', ncpu: 2 };

function spec(): Spec {
  return {
    ociVersion: '1.2.0',
    process: { user: { uid: 0, gid: 0 }, args: ['sh'], cwd: '/' },
    root: { path: 'rootfs' },
    linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }] },
  };
}

function apply(s: Spec, flag: string, value: unknown): Spec {
  const def = flags.find((f) => f.syntax.split(/[ ,]+/).includes(flag));
  if (!def?.apply) throw new Error(`no flag ${flag}`);
  def.apply(s, value, env);
  return s;
}

function usage(flag: string, value: unknown, s: Spec = spec()): string {
  try {
    apply(s, flag, value);
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    expect((e as UsageError).exitCode).toBe(125);
    return (e as Error).message;
  }
  throw new Error(`${flag} ${String(value)} was accepted`);
}

describe('value parsers', () => {
  it('parses sizes as docker does (binary units, optional b/ib)', () => {
    expect(parseBytes('32m')).toBe(32 * 1024 * 1024);
    expect(parseBytes('32M')).toBe(32 * 1024 * 1024);
    expect(parseBytes('1.5g')).toBe(1.5 * 1024 ** 3);
    expect(parseBytes('64MiB')).toBe(64 * 1024 ** 2);
    expect(parseBytes('512kb')).toBe(512 * 1024);
    expect(parseBytes('1000')).toBe(1000);
    expect(parseBytes('100b')).toBe(100);
    for (const bad of ['12xyz', '-5m', '', 'm', '1e3', '0x10', '1 2m']) expect(() => parseBytes(bad)).toThrow();
  });
  it('parses CPUs into nano-CPUs without float error', () => {
    expect(parseNanoCpus('0.5')).toBe(500_000_000);
    expect(parseNanoCpus('1.25')).toBe(1_250_000_000);
    expect(parseNanoCpus('2')).toBe(2e9);
    expect(parseNanoCpus('.1')).toBe(100_000_000);
    expect(parseNanoCpus('-1')).toBe(-1e9);
    expect(() => parseNanoCpus('half')).toThrow();
  });
  it('parses and formats cpuset lists', () => {
    expect(parseCpuList('0-2,5,7-8')).toEqual([0, 1, 2, 5, 7, 8]);
    expect(formatCpuList([0, 1, 2, 5, 7, 8])).toBe('0-2,5,7-8');
    for (const bad of ['', '3-1', 'a', '1,,2', '-1']) expect(() => parseCpuList(bad)).toThrow();
  });
});

describe('resource flags → linux.resources', () => {
  it('--pids-limit', () => {
    expect(apply(spec(), '--pids-limit', '50').linux.resources?.pids).toEqual({ limit: 50 });
    expect(apply(spec(), '--pids-limit', '-1').linux.resources?.pids).toEqual({ limit: -1 });
    expect(apply(spec(), '--pids-limit', '0').linux.resources?.pids).toEqual({ limit: -1 });
    expect(usage('--pids-limit', 'lots')).toMatch(/^--pids-limit: invalid integer "lots"/);
    expect(usage('--pids-limit', '1.5')).toMatch(/--pids-limit/);
  });

  it('-m/--memory sets the limit and docker\'s default memory+swap of twice the limit', () => {
    const s = apply(spec(), '--memory', '32m');
    expect(s.linux.resources?.memory).toEqual({ limit: 32 * 1024 ** 2, swap: 64 * 1024 ** 2 });
    expect(apply(spec(), '-m', '1g').linux.resources?.memory?.limit).toBe(1024 ** 3);
    expect(usage('--memory', '12xyz')).toMatch(/^--memory: invalid size "12xyz"/);
    expect(usage('--memory', '-5m')).toMatch(/^--memory: invalid size/);
    expect(usage('--memory', '4m')).toBe('--memory: minimum memory limit allowed is 6MB');
    expect(apply(spec(), '--memory', '0').linux.resources?.memory).toBeUndefined();
  });

  it('--memory-swap in either order with -m; -1 is unlimited', () => {
    const a = apply(apply(spec(), '--memory', '32m'), '--memory-swap', '100m');
    expect(a.linux.resources?.memory).toEqual({ limit: 32 * 1024 ** 2, swap: 100 * 1024 ** 2 });
    const b = apply(apply(spec(), '--memory-swap', '100m'), '--memory', '32m');
    expect(b.linux.resources?.memory).toEqual({ limit: 32 * 1024 ** 2, swap: 100 * 1024 ** 2 });
    expect(apply(apply(spec(), '-m', '32m'), '--memory-swap', '-1').linux.resources?.memory?.swap).toBe(-1);
    expect(usage('--memory-swap', '-2')).toMatch(/^--memory-swap: invalid size/);
  });

  it('--memory-reservation', () => {
    expect(apply(spec(), '--memory-reservation', '16m').linux.resources?.memory?.reservation).toBe(16 * 1024 ** 2);
    expect(usage('--memory-reservation', '1k')).toMatch(/6MB/);
  });

  it('--cpus becomes quota over a 100 ms period; bounded by the host\'s CPUs', () => {
    expect(apply(spec(), '--cpus', '0.5').linux.resources?.cpu).toEqual({ period: 100000, quota: 50000 });
    expect(apply(spec(), '--cpus', '1.5').linux.resources?.cpu).toEqual({ period: 100000, quota: 150000 });
    expect(usage('--cpus', '3')).toBe('--cpus: range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available');
    expect(usage('--cpus', '-1')).toMatch(/^--cpus: range of CPUs/);
    expect(usage('--cpus', '0.001')).toMatch(/^--cpus: range of CPUs/);
    expect(usage('--cpus', 'x')).toMatch(/^--cpus: invalid number/);
  });

  it('--cpus conflicts with --cpu-quota / --cpu-period, as in docker', () => {
    expect(usage('--cpu-quota', '50000', apply(spec(), '--cpus', '0.5'))).toMatch(/conflicts with --cpus/);
    expect(usage('--cpus', '0.5', apply(spec(), '--cpu-period', '50000'))).toMatch(/conflicts/);
  });

  it('--cpu-shares clamps like docker, rejects negatives', () => {
    expect(apply(spec(), '--cpu-shares', '512').linux.resources?.cpu?.shares).toBe(512);
    expect(apply(spec(), '--cpu-shares', '1').linux.resources?.cpu?.shares).toBe(2);
    expect(apply(spec(), '--cpu-shares', '999999').linux.resources?.cpu?.shares).toBe(262144);
    expect(usage('--cpu-shares', '-5')).toMatch(/^--cpu-shares: must not be negative/);
  });

  it('--cpu-quota / --cpu-period ranges', () => {
    expect(apply(apply(spec(), '--cpu-period', '50000'), '--cpu-quota', '25000').linux.resources?.cpu).toEqual({ period: 50000, quota: 25000 });
    expect(apply(spec(), '--cpu-quota', '-1').linux.resources?.cpu?.quota).toBe(-1);
    expect(usage('--cpu-quota', '500')).toMatch(/less than 1ms/);
    expect(usage('--cpu-quota', '-7')).toMatch(/^--cpu-quota/);
    expect(usage('--cpu-period', '999')).toMatch(/^--cpu-period: CPU cfs period/);
    expect(usage('--cpu-period', '2000000')).toMatch(/^--cpu-period/);
  });

  it('--cpuset-cpus / --cpuset-mems', () => {
    expect(apply(spec(), '--cpuset-cpus', '0-1').linux.resources?.cpu?.cpus).toBe('0-1');
    expect(apply(spec(), '--cpuset-mems', '0').linux.resources?.cpu?.mems).toBe('0');
    expect(usage('--cpuset-cpus', '5')).toBe('--cpuset-cpus: requested CPUs 5 not available (this host has 0-1)');
    expect(usage('--cpuset-cpus', '1-0')).toMatch(/^--cpuset-cpus: invalid range/);
    expect(usage('--cpuset-mems', 'x')).toMatch(/^--cpuset-mems/);
  });

  it('--blkio-weight', () => {
    expect(apply(spec(), '--blkio-weight', '300').linux.resources?.blockIO?.weight).toBe(300);
    expect(usage('--blkio-weight', '5')).toBe('--blkio-weight: range of blkio weight is from 10 to 1000');
    expect(usage('--blkio-weight', '1001')).toMatch(/10 to 1000/);
  });

  describe('device throttles', () => {
    const orig = statBlockDevice;
    afterEach(() => setStatBlockDevice(orig));
    it('resolve the device to major:minor and parse the rate', () => {
      setStatBlockDevice((p) => {
        if (p === '/dev/vda') return { major: 254, minor: 0 };
        throw new Error(`${p}: ENOENT`);
      });
      const s = apply(spec(), '--device-read-bps', ['/dev/vda:1mb']);
      expect(s.linux.resources?.blockIO?.throttleReadBpsDevice).toEqual([{ major: 254, minor: 0, rate: 1024 * 1024 }]);
      apply(s, '--device-write-iops', ['/dev/vda:100']);
      expect(s.linux.resources?.blockIO?.throttleWriteIOPSDevice).toEqual([{ major: 254, minor: 0, rate: 100 }]);
      expect(usage('--device-read-bps', ['/dev/nope:1mb'])).toBe('--device-read-bps: /dev/nope: ENOENT');
      expect(usage('--device-write-bps', ['/dev/vda'])).toMatch(/must be PATH:RATE/);
      expect(usage('--device-read-iops', ['/dev/vda:fast'])).toMatch(/^--device-read-iops: invalid integer/);
      expect(usage('--device-read-bps', ['/etc/passwd:1m'])).toMatch(/under \/dev/);
    });
    it('refuse a character device (real stat of /dev/null)', () => {
      expect(usage('--device-read-bps', ['/dev/null:1m'])).toBe('--device-read-bps: /dev/null is not a block device');
    });
  });

  it('--cgroup-parent stays inside the hierarchy', () => {
    expect(apply(spec(), '--cgroup-parent', '/myapp').annotations).toEqual({ 'org.tsrun.cgroup-parent': '/myapp' });
    expect(usage('--cgroup-parent', '../..')).toMatch(/^--cgroup-parent: "\.\.\/\.\." leaves the cgroup hierarchy/);
    expect(usage('--cgroup-parent', '/a/../../b')).toMatch(/leaves/);
    expect(usage('--cgroup-parent', 'system.slice:docker:x')).toMatch(/systemd/);
  });

  it('--cgroupns private|host', () => {
    expect(apply(spec(), '--cgroupns', 'private').linux.namespaces.filter((n) => n.type === 'cgroup')).toHaveLength(1);
    const s = apply(spec(), '--cgroupns', 'private');
    expect(apply(s, '--cgroupns', 'host').linux.namespaces.some((n) => n.type === 'cgroup')).toBe(false);
    expect(usage('--cgroupns', 'shared')).toBe('--cgroupns: "shared" is not private or host');
  });

  it('every row names the cgroups control and mirrors a docker flag', () => {
    for (const f of flags) {
      expect(f.control).toBe('cgroups');
      expect(f.docker).toBeTruthy();
    }
  });
});
