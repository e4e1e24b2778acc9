// OCI linux.resources → the cgroup files that carry them, for v1 and v2 hierarchies.
// The table (docs/cgroups.md) follows what current OCI runtimes write; the conversions
// between v1 and v2 ranges are documented next to each function.
import { deviceCgroupV1Writes, withDefaultDeviceRules } from '../devices.js';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { SpecError, UnsupportedError } from '../../errors.js';
import type { Resources } from '../../spec/types.js';
import type { CgroupLayout, Hierarchy } from './mode.js';
import { MAX_CFS_PERIOD_US, MAX_SHARES, MIN_CFS_US, MIN_SHARES } from './flags.js';
import { parseCpuList } from './units.js';
import { quoteValue } from '../../spec/quote.js';

export interface CgroupWrite {
  controller: string;
  file: string;
  value: string;
  /** the OCI field this write comes from, e.g. linux.resources.memory.limit */
  field: string;
  /** when set, a missing file is reported with this warning instead of failing (kernel option off) */
  optional?: string;
}

export interface ResourceMapping {
  writes: CgroupWrite[];
  warnings: string[];
  /** controllers the writes need (the manager enables them on v2) */
  controllers: string[];
}

/** Does `file` exist in hierarchy `h`? Default looks at the hierarchy's root directory. */
export type FileProbe = (h: Hierarchy, file: string) => boolean;
export const rootProbe: FileProbe = (h, file) => existsSync(join(h.mountPoint, file));

/**
 * cpu.shares (2..262144, default 1024) → cpu.weight (1..10000, default 100).
 * Since 2025 runc (opencontainers/cgroups #20) and crun (#1767) map the logarithm of the
 * shares onto a parabola through (2→1), (1024→100), (262144→10000), so the two defaults
 * meet; the older linear map sent 1024 to 39, starving containers next to system services.
 */
export function sharesToWeight(shares: number): number {
  if (shares === 0) return 0;
  const s = Math.min(MAX_SHARES, Math.max(MIN_SHARES, shares));
  const l = Math.log2(s);
  const exponent = (l * l + 125 * l) / 612 - 7 / 34;
  return Math.min(10000, Math.max(1, Math.ceil(10 ** exponent)));
}

/**
 * blkio.weight (10..1000) → io.weight (1..10000), linearly, as runc and crun do for the
 * cgroup v2 io controller (io.bfq.weight uses the v1 range unchanged).
 */
export function blkioWeightToIoWeight(weight: number): number {
  if (weight === 0) return 0;
  return 1 + Math.floor(((weight - 10) * 9999) / 990);
}

/**
 * The OCI memory.swap is docker's --memory-swap: memory plus swap (what v1's
 * memory.memsw.limit_in_bytes holds). cgroup v2's memory.swap.max counts swap alone, so it
 * gets swap − limit. Returns the value for memory.swap.max, or undefined to leave it alone.
 */
export function swapToV2(swap: number | undefined, limit: number | undefined): string | undefined {
  // memory unlimited and swap unset: unlimited both, as on v1 where memsw follows memory
  if ((limit === -1 || limit === undefined) && swap === undefined) return limit === -1 ? 'max' : undefined;
  if (swap === undefined || swap === 0) return undefined;
  if (swap === -1) return 'max';
  if (limit === undefined || limit <= 0) {
    throw new SpecError('linux.resources.memory.swap', 'a swap limit needs memory.limit (--memory-swap needs --memory)');
  }
  if (swap < limit) {
    throw new SpecError('linux.resources.memory.swap', `memory+swap (${swap}) must be at least memory.limit (${limit}) (--memory-swap ≥ --memory)`);
  }
  return String(swap - limit);
}

/** cpu.max for v2: "$QUOTA $PERIOD", quota "max" when unlimited. */
export function cpuMax(quota: number | undefined, period: number | undefined): string | undefined {
  if (quota === undefined && period === undefined) return undefined;
  const q = quota === undefined || quota <= 0 ? 'max' : String(quota);
  return `${q} ${period ?? 100000}`;
}

function describeLayout(layout: CgroupLayout): string {
  const v1 = layout.v1.filter((h) => h.controllers.length).map((h) => h.controllers.join(','));
  const parts: string[] = [];
  if (v1.length) parts.push(`v1 hierarchies: ${v1.join(' ')}`);
  if (layout.unified) parts.push(`cgroup2 controllers: ${layout.unified.controllers.join(' ') || '(none)'}`);
  return parts.join('; ');
}

/** Checks the spec's values themselves (ranges and cross-field rules), host-independent. */
export function validateResources(r: Resources | undefined): void {
  if (!r) return;
  const m = r.memory;
  if (m) {
    for (const k of ['limit', 'reservation', 'swap'] as const) {
      const v = m[k];
      if (v !== undefined && (!Number.isSafeInteger(v) || v < -1)) {
        throw new SpecError(`linux.resources.memory.${k}`, `${v} is not a byte count (or -1 for unlimited)`);
      }
    }
    if (m.swap !== undefined && m.swap > 0 && !(m.limit !== undefined && m.limit > 0)) {
      throw new SpecError('linux.resources.memory.swap', 'a swap limit needs memory.limit (--memory-swap needs --memory)');
    }
    if (m.swap !== undefined && m.swap > 0 && m.limit !== undefined && m.limit > 0 && m.swap < m.limit) {
      throw new SpecError('linux.resources.memory.swap', `memory+swap (${m.swap}) must be at least memory.limit (${m.limit}) (--memory-swap ≥ --memory)`);
    }
    if (m.reservation !== undefined && m.limit !== undefined && m.limit > 0 && m.reservation > m.limit) {
      throw new SpecError('linux.resources.memory.reservation', `reservation (${m.reservation}) must not exceed memory.limit (${m.limit}) (--memory-reservation ≤ --memory)`);
    }
    if (m.swappiness !== undefined && (m.swappiness < 0 || m.swappiness > 100)) {
      throw new SpecError('linux.resources.memory.swappiness', `${m.swappiness} is outside 0..100`);
    }
  }
  const c = r.cpu;
  if (c) {
    if (c.period !== undefined && c.period !== 0 && (c.period < MIN_CFS_US || c.period > MAX_CFS_PERIOD_US)) {
      throw new SpecError('linux.resources.cpu.period', `${c.period} is outside ${MIN_CFS_US}..${MAX_CFS_PERIOD_US} µs`);
    }
    if (c.quota !== undefined && c.quota > 0 && c.quota < MIN_CFS_US) {
      throw new SpecError('linux.resources.cpu.quota', `${c.quota} is below ${MIN_CFS_US} µs`);
    }
    if (c.shares !== undefined && c.shares < 0) throw new SpecError('linux.resources.cpu.shares', 'must not be negative');
    for (const k of ['cpus', 'mems'] as const) {
      const v = c[k];
      if (v !== undefined && v !== '' && !/^\d+(-\d+)?(,\d+(-\d+)?)*$/.test(v)) {
        throw new SpecError(`linux.resources.cpu.${k}`, `${quoteValue(v)} is not a list like 0-2,4`);
      }
      if (v) {
        // the grammar is right, but a range such as 0-99999999 names no host's CPUs (and
        // would be expanded member by member): refuse it here, naming the field
        try {
          parseCpuList(v);
        } catch (e) {
          throw new SpecError(`linux.resources.cpu.${k}`, `${quoteValue(v)}: ${(e as Error).message}`);
        }
      }
    }
  }
  if (r.pids && !Number.isSafeInteger(r.pids.limit)) throw new SpecError('linux.resources.pids.limit', 'must be an integer');
  const b = r.blockIO;
  if (b?.weight !== undefined && b.weight !== 0 && (b.weight < 10 || b.weight > 1000)) {
    throw new SpecError('linux.resources.blockIO.weight', `${b.weight} is outside 10..1000`);
  }
  for (const key of Object.keys(r.unified ?? {})) {
    if (!/^[a-z0-9_]+\.[a-z0-9_.]+$/.test(key) || key.includes('..')) {
      throw new SpecError(`linux.resources.unified.${key}`, 'is not a cgroup file name');
    }
  }
}

/**
 * Maps resources onto cgroup file writes for the host's layout. Each controller is written
 * in whichever hierarchy holds it (v1 file names there, v2 names in the unified one); a value
 * for a controller the host lacks is an UnsupportedError naming controller and mode.
 */
export function mapResources(r: Resources | undefined, layout: CgroupLayout, probe: FileProbe = rootProbe): ResourceMapping {
  validateResources(r);
  const writes: CgroupWrite[] = [];
  const warnings: string[] = [];
  if (!r) return { writes, warnings, controllers: [] };

  const where = (controller: string, field: string): Hierarchy => {
    const h = layout.controllers[controller];
    if (!h) {
      throw new UnsupportedError(`${field}: the ${controller} cgroup controller is not available on this host (cgroup mode ${layout.mode}; ${describeLayout(layout)})`);
    }
    return h;
  };
  const add = (controller: string, file: string, value: string | number, field: string, optional?: string): void => {
    writes.push({ controller, file, value: String(value), field, ...(optional ? { optional } : {}) });
  };

  const mem = r.memory;
  if (mem && (mem.limit !== undefined || mem.reservation !== undefined || mem.swap !== undefined || mem.swappiness !== undefined || mem.disableOOMKiller !== undefined || mem.kernel !== undefined)) {
    const f = 'linux.resources.memory';
    const h = where('memory', f);
    if (h.version === 1) {
      // limit before memsw: memsw must never be below the memory limit (memory.txt 2.4/5.3)
      if (mem.limit !== undefined && mem.limit !== 0) add('memory', 'memory.limit_in_bytes', mem.limit, `${f}.limit`);
      if (mem.swap !== undefined && mem.swap !== 0) {
        add('memory', 'memory.memsw.limit_in_bytes', mem.swap, `${f}.swap`, 'swap limit ignored: this kernel does not account swap (memory.memsw.* absent; boot with swapaccount=1)');
      }
      if (mem.reservation !== undefined && mem.reservation !== 0) add('memory', 'memory.soft_limit_in_bytes', mem.reservation, `${f}.reservation`);
      if (mem.swappiness !== undefined) add('memory', 'memory.swappiness', mem.swappiness, `${f}.swappiness`);
      if (mem.disableOOMKiller) add('memory', 'memory.oom_control', 1, `${f}.disableOOMKiller`);
    } else {
      if (mem.limit !== undefined && mem.limit !== 0) add('memory', 'memory.max', mem.limit === -1 ? 'max' : mem.limit, `${f}.limit`);
      const swap = swapToV2(mem.swap, mem.limit);
      if (swap !== undefined) add('memory', 'memory.swap.max', swap, `${f}.swap`, 'swap limit ignored: this kernel does not account swap (memory.swap.max absent)');
      if (mem.reservation !== undefined && mem.reservation !== 0) add('memory', 'memory.low', mem.reservation === -1 ? 'max' : mem.reservation, `${f}.reservation`);
      // cgroup v2 has no per-cgroup swappiness nor a switch for the OOM killer (cgroup-v2.rst)
      if (mem.swappiness !== undefined) throw new UnsupportedError(`${f}.swappiness: cgroup v2 has no per-cgroup swappiness (cgroup mode ${layout.mode})`);
      if (mem.disableOOMKiller) throw new UnsupportedError(`${f}.disableOOMKiller: cgroup v2 cannot disable the OOM killer (cgroup mode ${layout.mode})`);
    }
    if (mem.kernel !== undefined) warnings.push(`${f}.kernel ignored: kernel memory limits were removed from Linux (5.16+) and are counted in memory.limit`);
  }

  const cpu = r.cpu;
  if (cpu) {
    const f = 'linux.resources.cpu';
    if (cpu.shares || cpu.quota || cpu.period || cpu.idle !== undefined || cpu.realtimePeriod || cpu.realtimeRuntime) {
      const h = where('cpu', f);
      if (h.version === 1) {
        if (cpu.shares) add('cpu', 'cpu.shares', cpu.shares, `${f}.shares`);
        // period first: the kernel checks a quota against the period it is written with
        if (cpu.period) add('cpu', 'cpu.cfs_period_us', cpu.period, `${f}.period`);
        if (cpu.quota) add('cpu', 'cpu.cfs_quota_us', cpu.quota < 0 ? -1 : cpu.quota, `${f}.quota`);
        if (cpu.realtimePeriod) add('cpu', 'cpu.rt_period_us', cpu.realtimePeriod, `${f}.realtimePeriod`);
        if (cpu.realtimeRuntime) add('cpu', 'cpu.rt_runtime_us', cpu.realtimeRuntime, `${f}.realtimeRuntime`);
        if (cpu.idle !== undefined) add('cpu', 'cpu.idle', cpu.idle, `${f}.idle`);
      } else {
        if (cpu.shares) add('cpu', 'cpu.weight', sharesToWeight(cpu.shares), `${f}.shares`);
        const max = cpuMax(cpu.quota || undefined, cpu.period || undefined);
        if (max) add('cpu', 'cpu.max', max, cpu.quota ? `${f}.quota` : `${f}.period`);
        if (cpu.realtimePeriod || cpu.realtimeRuntime) {
          throw new UnsupportedError(`${f}.realtimeRuntime: cgroup v2 has no real-time bandwidth control (cgroup mode ${layout.mode})`);
        }
        if (cpu.idle !== undefined) add('cpu', 'cpu.idle', cpu.idle, `${f}.idle`);
      }
    }
    if (cpu.cpus) {
      where('cpuset', `${f}.cpus`);
      add('cpuset', 'cpuset.cpus', cpu.cpus, `${f}.cpus`);
    }
    if (cpu.mems) {
      where('cpuset', `${f}.mems`);
      add('cpuset', 'cpuset.mems', cpu.mems, `${f}.mems`);
    }
  }

  if (r.pids && r.pids.limit !== 0) {
    where('pids', 'linux.resources.pids');
    add('pids', 'pids.max', r.pids.limit > 0 ? r.pids.limit : 'max', 'linux.resources.pids.limit');
  }

  const b = r.blockIO;
  if (b) {
    const f = 'linux.resources.blockIO';
    const throttles = [
      ['throttleReadBpsDevice', 'read_bps_device', 'rbps'],
      ['throttleWriteBpsDevice', 'write_bps_device', 'wbps'],
      ['throttleReadIOPSDevice', 'read_iops_device', 'riops'],
      ['throttleWriteIOPSDevice', 'write_iops_device', 'wiops'],
    ] as const;
    const any = b.weight || b.leafWeight || b.weightDevice?.length || throttles.some(([k]) => b[k]?.length);
    if (any) {
      const ctrl = layout.controllers['blkio'] ? 'blkio' : 'io';
      const h = layout.controllers['blkio'] ?? where('io', f);
      if (h.version === 1) {
        if (b.weight || b.weightDevice?.length) {
          // CFQ exposed blkio.weight; since 5.0 only BFQ remains and it names its own files
          const file = probe(h, 'blkio.weight') ? 'blkio.weight' : probe(h, 'blkio.bfq.weight') ? 'blkio.bfq.weight' : undefined;
          if (!file) {
            throw new UnsupportedError(`${f}.weight: the blkio controller here has no weight file (blkio.weight / blkio.bfq.weight: the BFQ I/O scheduler is not in use) (cgroup mode ${layout.mode})`);
          }
          if (b.weight) add(ctrl, file, b.weight, `${f}.weight`);
          for (const d of b.weightDevice ?? []) if (d.weight) add(ctrl, `${file}_device`, `${d.major}:${d.minor} ${d.weight}`, `${f}.weightDevice`);
        }
        if (b.leafWeight) add(ctrl, 'blkio.leaf_weight', b.leafWeight, `${f}.leafWeight`);
        for (const [key, file] of throttles) {
          for (const d of b[key] ?? []) add(ctrl, `blkio.throttle.${file}`, `${d.major}:${d.minor} ${d.rate}`, `${f}.${key}`);
        }
      } else {
        if (b.weight) add('io', 'io.weight', `default ${blkioWeightToIoWeight(b.weight)}`, `${f}.weight`);
        for (const d of b.weightDevice ?? []) if (d.weight) add('io', 'io.weight', `${d.major}:${d.minor} ${blkioWeightToIoWeight(d.weight)}`, `${f}.weightDevice`);
        if (b.leafWeight) throw new UnsupportedError(`${f}.leafWeight: cgroup v2 has no leaf weight (cgroup mode ${layout.mode})`);
        for (const [key, , v2key] of throttles) {
          for (const d of b[key] ?? []) add('io', 'io.max', `${d.major}:${d.minor} ${v2key}=${d.rate}`, `${f}.${key}`);
        }
      }
    }
  }

  for (const [i, hp] of (r.hugepageLimits ?? []).entries()) {
    const f = `linux.resources.hugepageLimits[${i}]`;
    if (!/^\d+[KMG]B$/.test(hp.pageSize)) throw new SpecError(`${f}.pageSize`, `"${hp.pageSize}" is not a page size like 2MB`);
    const h = where('hugetlb', f);
    add('hugetlb', h.version === 1 ? `hugetlb.${hp.pageSize}.limit_in_bytes` : `hugetlb.${hp.pageSize}.max`, hp.limit, f);
  }

  for (const [file, value] of Object.entries(r.unified ?? {})) {
    const f = `linux.resources.unified.${file}`;
    const prefix = file.split('.')[0]!;
    if (!layout.unified) throw new UnsupportedError(`${f}: needs a cgroup2 hierarchy (cgroup mode ${layout.mode})`);
    if (prefix !== 'cgroup') {
      const h = layout.controllers[prefix];
      if (!h || h.version !== 2) {
        throw new UnsupportedError(`${f}: the ${prefix} controller is not in the cgroup2 hierarchy here (cgroup mode ${layout.mode}; ${describeLayout(layout)})`);
      }
    }
    add(prefix === 'cgroup' ? 'unified' : prefix, file, value, f);
  }

  // Device rules (src/controls/devices.ts): the v1 devices controller enforces them; cgroup
  // v2 has no devices files, only a BPF_CGROUP_DEVICE program, which tsrun does not attach.
  if (r.devices?.length) {
    if (layout.controllers['devices']) {
      for (const w of deviceCgroupV1Writes(withDefaultDeviceRules(r.devices))) add('devices', w.file, w.value, 'linux.resources.devices');
    } else {
      warnings.push('linux.resources.devices not enforced: cgroup v2 has no devices controller (it needs a BPF_CGROUP_DEVICE program); only the absent device nodes protect');
    }
  }
  const controllers = [...new Set(writes.map((w) => w.controller))];
  return { writes, warnings, controllers };
}
