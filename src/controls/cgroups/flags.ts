// docker run's resource flags, mapped into the OCI spec's linux.resources (runtime-spec
// config-linux.md, "Control groups"). Values are checked the way docker checks them, so a
// command line that docker refuses is refused here too, with the flag named.
import { statSync } from 'node:fs';
import { UsageError } from '../../errors.js';
import type { FlagDef, FlagEnv } from '../../spec/flag-types.js';
import type { Resources, Spec, ThrottleDevice } from '../../spec/types.js';
import { parseBytes, parseCpuList, parseInteger, parseNanoCpus } from './units.js';

/** Annotation carrying --cgroup-parent until the container id is known (the control joins them). */
export const CGROUP_PARENT_ANNOTATION = 'org.tsrun.cgroup-parent';

/** Docker's floor for --memory and --memory-reservation (daemon: linuxMinMemory). */
export const MIN_MEMORY = 6 * 1024 * 1024;
/** cpu.shares range the kernel accepts (sched: MIN_SHARES 2, MAX_SHARES 1<<18). */
export const MIN_SHARES = 2;
export const MAX_SHARES = 262144;
/** CFS bandwidth limits (sched-bwc.rst): period 1 ms .. 1 s, quota at least 1 ms. */
export const MIN_CFS_US = 1000;
export const MAX_CFS_PERIOD_US = 1_000_000;
export const DEFAULT_CFS_PERIOD_US = 100_000;

// quota/period objects written by --cpus, to refuse --cpu-quota/--cpu-period next to it
// (kept out of the spec itself, which is serialised as config.json)
const setByCpus = new WeakSet<object>();

function res(spec: Spec): Resources {
  spec.linux.resources ??= {};
  return spec.linux.resources;
}

function parse<T>(flag: string, value: unknown, fn: (s: string) => T): T {
  try {
    return fn(String(value));
  } catch (e) {
    throw new UsageError(`${flag}: ${(e as Error).message}`);
  }
}

/** Resolves a host device path to major:minor; replaceable so unit tests need no device nodes. */
export let statBlockDevice = (path: string): { major: number; minor: number } => {
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'error';
    throw new Error(`${path}: ${code}`);
  }
  if (!st.isBlockDevice()) throw new Error(`${path} is not a block device`);
  // Linux dev_t encoding (sysmacros.h: major/minor).
  const rdev = st.rdev;
  return { major: ((rdev >> 8) & 0xfff) | ((rdev / 2 ** 32) & ~0xfff), minor: (rdev & 0xff) | ((rdev >> 12) & ~0xff) };
};

export function setStatBlockDevice(fn: typeof statBlockDevice): void {
  statBlockDevice = fn;
}

function throttle(flag: string, rate: (s: string) => number) {
  return (value: unknown): ThrottleDevice[] => {
    const items = Array.isArray(value) ? value : [value];
    return items.map((item) => {
      const text = String(item);
      const i = text.lastIndexOf(':');
      if (i <= 0) throw new UsageError(`${flag}: "${text}" must be PATH:RATE, e.g. /dev/sda:1mb`);
      const path = text.slice(0, i);
      if (!path.startsWith('/dev/')) throw new UsageError(`${flag}: "${path}" must be a device path under /dev/`);
      const r = parse(flag, text.slice(i + 1), rate);
      if (r < 0) throw new UsageError(`${flag}: rate must not be negative`);
      const dev = parse(flag, path, (p) => statBlockDevice(p));
      return { ...dev, rate: r };
    });
  };
}

const iopsRate = (s: string): number => {
  const n = parseInteger(s);
  if (n < 0) throw new Error(`invalid rate "${s}"`);
  return n;
};

function cpuList(flag: string, value: unknown, limit?: number, what = 'CPUs'): string {
  const text = String(value).trim();
  const members = parse(flag, text, parseCpuList);
  if (limit !== undefined) {
    const absent = members.filter((c) => c >= limit);
    if (absent.length) {
      throw new UsageError(`${flag}: requested ${what} ${absent.join(',')} not available (this host has ${limit === 1 ? '0' : `0-${limit - 1}`})`);
    }
  }
  return text;
}

export const flags: FlagDef[] = [
  {
    syntax: '--pids-limit <n>',
    help: 'maximum number of tasks in the container (-1 or 0: unlimited)',
    docker: '--pids-limit',
    control: 'cgroups',
    apply(spec, value) {
      const n = parse('--pids-limit', value, parseInteger);
      // docker: values <= 0 mean unlimited; pids.max then reads "max".
      res(spec).pids = { limit: n > 0 ? n : -1 };
    },
  },
  {
    syntax: '-m, --memory <bytes>',
    help: 'memory limit (b, k, m, g); docker default: as much swap again unless --memory-swap',
    docker: '--memory',
    control: 'cgroups',
    apply(spec, value) {
      const n = parse('--memory', value, parseBytes);
      if (n === 0) return; // docker: 0 means no limit
      if (n < MIN_MEMORY) throw new UsageError('--memory: minimum memory limit allowed is 6MB');
      const mem = (res(spec).memory ??= {});
      mem.limit = n;
      // docker (daemon adaptContainerSettings): without --memory-swap the container may use
      // as much swap as memory, i.e. memory+swap = 2 × memory.
      if (mem.swap === undefined) mem.swap = 2 * n;
    },
  },
  {
    syntax: '--memory-swap <bytes>',
    help: 'memory plus swap limit (b, k, m, g); -1: unlimited swap',
    docker: '--memory-swap',
    control: 'cgroups',
    apply(spec, value) {
      const text = String(value).trim();
      const mem = (res(spec).memory ??= {});
      if (text === '-1') {
        mem.swap = -1;
        return;
      }
      const n = parse('--memory-swap', text, parseBytes);
      if (n === 0) return;
      mem.swap = n;
    },
  },
  {
    syntax: '--memory-reservation <bytes>',
    help: 'memory soft limit (b, k, m, g)',
    docker: '--memory-reservation',
    control: 'cgroups',
    apply(spec, value) {
      const n = parse('--memory-reservation', value, parseBytes);
      if (n === 0) return;
      if (n < MIN_MEMORY) throw new UsageError('--memory-reservation: minimum memory reservation allowed is 6MB');
      (res(spec).memory ??= {}).reservation = n;
    },
  },
  {
    syntax: '--cpus <n>',
    help: 'number of CPUs (decimal): CFS quota = n × period (100ms)',
    docker: '--cpus',
    control: 'cgroups',
    apply(spec, value, env: FlagEnv) {
      const nano = parse('--cpus', value, parseNanoCpus);
      if (nano === 0) return;
      if (nano < 0.01e9 || nano > env.ncpu * 1e9) {
        throw new UsageError(`--cpus: range of CPUs is from 0.01 to ${env.ncpu.toFixed(2)}, as there are only ${env.ncpu} CPUs available`);
      }
      const cpu = (res(spec).cpu ??= {});
      if (cpu.quota !== undefined || cpu.period !== undefined) {
        throw new UsageError('--cpus: conflicts with --cpu-quota/--cpu-period (docker: "Conflicting options")');
      }
      cpu.period = DEFAULT_CFS_PERIOD_US;
      cpu.quota = Math.round((nano * DEFAULT_CFS_PERIOD_US) / 1e9);
      setByCpus.add(cpu);
    },
  },
  {
    syntax: '--cpu-shares <n>',
    help: 'relative CPU weight (default 1024; v2: converted to cpu.weight)',
    docker: '--cpu-shares',
    control: 'cgroups',
    apply(spec, value) {
      const n = parse('--cpu-shares', value, parseInteger);
      if (n < 0) throw new UsageError('--cpu-shares: must not be negative');
      if (n === 0) return;
      // docker clamps into the kernel's range instead of failing
      (res(spec).cpu ??= {}).shares = Math.min(MAX_SHARES, Math.max(MIN_SHARES, n));
    },
  },
  {
    syntax: '--cpu-quota <us>',
    help: 'CFS quota in microseconds per period (-1: unlimited)',
    docker: '--cpu-quota',
    control: 'cgroups',
    apply(spec, value) {
      const n = parse('--cpu-quota', value, parseInteger);
      if (n === 0) return;
      if (n < -1) throw new UsageError('--cpu-quota: must be -1 (unlimited) or at least 1000');
      if (n > 0 && n < MIN_CFS_US) throw new UsageError('--cpu-quota: CPU cfs quota can not be less than 1ms (i.e. 1000)');
      const cpu = (res(spec).cpu ??= {});
      if (setByCpus.has(cpu)) throw new UsageError('--cpu-quota: conflicts with --cpus (docker: "Conflicting options")');
      cpu.quota = n;
    },
  },
  {
    syntax: '--cpu-period <us>',
    help: 'CFS period in microseconds (1000..1000000)',
    docker: '--cpu-period',
    control: 'cgroups',
    apply(spec, value) {
      const n = parse('--cpu-period', value, parseInteger);
      if (n === 0) return;
      if (n < MIN_CFS_US || n > MAX_CFS_PERIOD_US) {
        throw new UsageError('--cpu-period: CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)');
      }
      const cpu = (res(spec).cpu ??= {});
      if (setByCpus.has(cpu)) throw new UsageError('--cpu-period: conflicts with --cpus (docker: "Conflicting options")');
      cpu.period = n;
    },
  },
  {
    syntax: '--cpuset-cpus <list>',
    help: 'CPUs the container may run on (0-3, 0,1)',
    docker: '--cpuset-cpus',
    control: 'cgroups',
    apply(spec, value, env) {
      (res(spec).cpu ??= {}).cpus = cpuList('--cpuset-cpus', value, env.ncpu);
    },
  },
  {
    syntax: '--cpuset-mems <list>',
    help: 'memory nodes the container may allocate from (0-3, 0,1)',
    docker: '--cpuset-mems',
    control: 'cgroups',
    apply(spec, value) {
      // which nodes exist is checked against the host's cpuset.mems when the plan is built
      (res(spec).cpu ??= {}).mems = cpuList('--cpuset-mems', value, undefined, 'memory nodes');
    },
  },
  {
    syntax: '--blkio-weight <n>',
    help: 'relative block IO weight, 10..1000 (0: unset)',
    docker: '--blkio-weight',
    control: 'cgroups',
    apply(spec, value) {
      const n = parse('--blkio-weight', value, parseInteger);
      if (n === 0) return;
      if (n < 10 || n > 1000) throw new UsageError('--blkio-weight: range of blkio weight is from 10 to 1000');
      (res(spec).blockIO ??= {}).weight = n;
    },
  },
  {
    syntax: '--device-read-bps <path:rate>',
    help: 'limit read rate from a device, bytes per second (b, k, m, g)',
    docker: '--device-read-bps',
    control: 'cgroups',
    repeatable: true,
    apply(spec, value) {
      (res(spec).blockIO ??= {}).throttleReadBpsDevice = throttle('--device-read-bps', parseBytes)(value);
    },
  },
  {
    syntax: '--device-write-bps <path:rate>',
    help: 'limit write rate to a device, bytes per second (b, k, m, g)',
    docker: '--device-write-bps',
    control: 'cgroups',
    repeatable: true,
    apply(spec, value) {
      (res(spec).blockIO ??= {}).throttleWriteBpsDevice = throttle('--device-write-bps', parseBytes)(value);
    },
  },
  {
    syntax: '--device-read-iops <path:rate>',
    help: 'limit read operations per second from a device',
    docker: '--device-read-iops',
    control: 'cgroups',
    repeatable: true,
    apply(spec, value) {
      (res(spec).blockIO ??= {}).throttleReadIOPSDevice = throttle('--device-read-iops', iopsRate)(value);
    },
  },
  {
    syntax: '--device-write-iops <path:rate>',
    help: 'limit write operations per second to a device',
    docker: '--device-write-iops',
    control: 'cgroups',
    repeatable: true,
    apply(spec, value) {
      (res(spec).blockIO ??= {}).throttleWriteIOPSDevice = throttle('--device-write-iops', iopsRate)(value);
    },
  },
  {
    syntax: '--cgroup-parent <path>',
    help: 'parent cgroup for the container (default /tsrun)',
    docker: '--cgroup-parent',
    control: 'cgroups',
    apply(spec, value) {
      const p = String(value).trim();
      if (!p) throw new UsageError('--cgroup-parent: must not be empty');
      if (p.split('/').includes('..')) throw new UsageError(`--cgroup-parent: "${p}" leaves the cgroup hierarchy ("..")`);
      if (/[\0\n]/.test(p)) throw new UsageError('--cgroup-parent: must not contain NUL or newline');
      if (p.includes(':')) throw new UsageError(`--cgroup-parent: "${p}" is a systemd slice spec; tsrun drives cgroupfs directly (use a path)`);
      spec.annotations = { ...spec.annotations, [CGROUP_PARENT_ANNOTATION]: p };
    },
  },
  {
    syntax: '--cgroupns <mode>',
    help: 'cgroup namespace: private (own cgroup shown as /) or host',
    docker: '--cgroupns',
    control: 'cgroups',
    apply(spec, value) {
      const mode = String(value).trim();
      const others = spec.linux.namespaces.filter((n) => n.type !== 'cgroup');
      if (mode === 'private') spec.linux.namespaces = [...others, { type: 'cgroup' }];
      else if (mode === 'host') spec.linux.namespaces = others;
      else throw new UsageError(`--cgroupns: "${mode}" is not private or host`);
    },
  },
];
