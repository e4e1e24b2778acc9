// Masked and read-only paths (hardening of /proc and /sys, no CIS check of its own; the workshop's
// "a container is a process": these files describe or control the *host*).
// /proc and /sys are mounted for the container, but many of their entries are not
// namespaced: /proc/kcore is the host's physical memory, /proc/keys lists keys of every
// user, /proc/sysrq-trigger can crash the host, /proc/sys holds kernel-wide knobs.
// Masking covers a file with /dev/null and a directory with an empty read-only tmpfs;
// read-only paths are bind-mounted onto themselves and remounted MS_RDONLY.
import { existsSync } from 'node:fs';
import type { BuildContext, ChildStep, Control, Step } from '../plan/types.js';
import type { FlagDef } from '../spec/flag-types.js';
import type { Spec } from '../spec/types.js';
import { SpecError, UsageError } from '../errors.js';

/** Paths docker masks by default, each with what it would expose. */
export const DEFAULT_MASKED: ReadonlyArray<[string, string]> = [
  ['/proc/asound', 'sound card state of the host'],
  ['/proc/acpi', 'host power management (e.g. /proc/acpi/wakeup writes)'],
  ['/proc/interrupts', 'host interrupt counters: a side channel on host activity'],
  ['/proc/kcore', "the host's physical memory as an ELF core (with CAP_SYS_RAWIO)"],
  ['/proc/keys', 'kernel keyrings visible to the caller, across containers'],
  ['/proc/latency_stats', 'host-wide latency statistics'],
  ['/proc/timer_list', 'host timers with kernel addresses and task names of other containers'],
  ['/proc/timer_stats', 'host timer statistics (old kernels)'],
  ['/proc/sched_debug', 'every task on the host with its name and pid'],
  ['/proc/scsi', 'host SCSI devices; writes can add or remove them'],
  ['/sys/firmware', 'host firmware tables (ACPI, EFI variables, DMI serial numbers)'],
  ['/sys/devices/virtual/powercap', 'RAPL energy counters: the PLATYPUS power side channel (CVE-2020-8694)'],
];

/** Paths docker makes read-only by default. */
export const DEFAULT_READONLY: ReadonlyArray<[string, string]> = [
  ['/proc/bus', 'PCI/USB configuration space of host devices'],
  ['/proc/fs', 'host filesystem tunables (e.g. nfsd)'],
  ['/proc/irq', 'interrupt affinity of the host CPUs'],
  ['/proc/sys', 'kernel-wide sysctls (those not namespaced change the host)'],
  ['/proc/sysrq-trigger', 'magic SysRq: a write can reboot or crash the host'],
];

const REASON = new Map([...DEFAULT_MASKED, ...DEFAULT_READONLY]);

export function defaultMaskedPaths(): string[] {
  return DEFAULT_MASKED.map(([p]) => p);
}
export function defaultReadonlyPaths(): string[] {
  return DEFAULT_READONLY.map(([p]) => p);
}

/** `--security-opt systempaths=unconfined` (docker): neither masked nor read-only paths. */
export function applySecurityOptSystemPaths(spec: Spec, value: string): void {
  if (value !== 'unconfined') throw new UsageError(`--security-opt systempaths: only "unconfined" is accepted, got "${value}"`);
  spec.linux.maskedPaths = [];
  spec.linux.readonlyPaths = [];
}

export const flags: FlagDef[] = [];

const MS_BIND = 0x1000n;
const MS_REC = 0x4000n;

// /proc and /sys of the container show the same kernel as the host's, so a path missing
// here (no ACPI, no powercap) is missing there too: leave it out of the plan instead of
// printing a step that does nothing. Other paths are checked by init at run time.
let exists: (p: string) => boolean = existsSync;
export function setExistsCheck(f: (p: string) => boolean): void {
  exists = f;
}
function skipAbsent(p: string): boolean {
  return (p.startsWith('/proc/') || p.startsWith('/sys/')) && !exists(p);
}

function step(op: ChildStep['op'], ints: bigint[], strs: string[], text: string, why: string): ChildStep {
  return { where: 'child', phase: 'post-pivot', op, ints, strs, text, why, control: 'masked-paths' };
}

function check(list: string[] | undefined, field: string): void {
  (list ?? []).forEach((p, i) => {
    if (typeof p !== 'string' || !p.startsWith('/')) throw new SpecError(`${field}[${i}]`, `"${String(p)}" is not an absolute path`);
    if (p.split('/').includes('..')) throw new SpecError(`${field}[${i}]`, `"${p}" contains ".."`);
  });
}

export const control: Control = {
  id: 'masked-paths',
  title: 'Masked and read-only /proc and /sys paths',
  ref: 'docker default maskedPaths/readonlyPaths (do not expose host kernel interfaces; --privileged, CIS 5.4, removes them)',
  validate(ctx: BuildContext): void {
    check(ctx.spec.linux.maskedPaths, 'linux.maskedPaths');
    check(ctx.spec.linux.readonlyPaths, 'linux.readonlyPaths');
  },
  steps(ctx: BuildContext): Step[] {
    const out: Step[] = [];
    // Read-only first, then masks: a masked path below a read-only one (none by default)
    // still gets its mount, because mounting onto a read-only mount is allowed.
    for (const p of ctx.spec.linux.readonlyPaths ?? []) {
      if (skipAbsent(p)) continue;
      const why = REASON.get(p) ?? 'listed in linux.readonlyPaths';
      out.push(
        step('MOUNT', [MS_BIND | MS_REC], [p, p, '', ''], `mount("${p}", "${p}", NULL, MS_BIND|MS_REC)`, `read-only: ${why}; a bind makes it its own mount`),
        step('REMOUNT_RO', [0n], [p], `mount(NULL, "${p}", NULL, MS_REMOUNT|MS_BIND|MS_RDONLY)`, `read-only: ${why}`),
      );
    }
    for (const p of ctx.spec.linux.maskedPaths ?? []) {
      if (skipAbsent(p)) continue;
      out.push(
        step('MASK_PATH', [], [p], `mask "${p}" (/dev/null over a file, read-only empty tmpfs over a directory)`, `masked: ${REASON.get(p) ?? 'listed in linux.maskedPaths'}`),
      );
    }
    return out;
  },
};
