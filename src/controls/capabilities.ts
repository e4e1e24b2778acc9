// Linux capabilities (capabilities(7)): which of root's powers the container keeps.
//
// What the kernel does with the five sets, and why tsrun sets them the way it does:
//  - bounding: the ceiling for everything a later execve can put in the permitted set.
//    For uid 0 the kernel treats every file as if it had all file capabilities, so after
//    execve root's permitted = effective = bounding | inheritable (| ambient). The bounding
//    set is therefore what decides root's powers inside the container.
//  - inheritable: kept empty. A non-empty inheritable set leaks into permitted at execve of
//    a file with inheritable file caps (CVE-2022-24769, fixed in moby/runc by emptying it).
//  - ambient: only when the spec asks. A non-root user keeps nothing across execve except
//    its ambient set (no file capabilities in images, no setuid), which is how a non-root
//    process can be given e.g. NET_BIND_SERVICE.
//  - effective/permitted: what init sets with capset(2) after the uid change (setresuid
//    clears the effective set; PR_SET_KEEPCAPS keeps permitted across it).
import type { BuildContext, ChildStep, Control, Step } from '../plan/types.js';
import type { FlagDef } from '../spec/flag-types.js';
import type { Capabilities, Spec } from '../spec/types.js';
import { SpecError, UsageError } from '../errors.js';
import { hasUserNamespace } from './userns.js';

export interface CapabilityInfo {
  bit: number;
  /** without the CAP_ prefix, as docker prints it */
  name: string;
  /** what holding it allows, and the risk it brings to a container (one line) */
  reason: string;
}

/** Every capability of Linux 6.x (include/uapi/linux/capability.h, CAP_LAST_CAP = 40). */
export const CAPABILITIES: readonly CapabilityInfo[] = [
  { bit: 0, name: 'CHOWN', reason: 'chown(2) any file; package managers and image set-up change owners' },
  { bit: 1, name: 'DAC_OVERRIDE', reason: 'ignore file read/write/execute permission bits (root reading 0600 files it does not own)' },
  { bit: 2, name: 'DAC_READ_SEARCH', reason: 'open_by_handle_at(2) reaches files outside the mount: the 2014 "shocker" container escape' },
  { bit: 3, name: 'FOWNER', reason: 'chmod/utime files not owned by the caller' },
  { bit: 4, name: 'FSETID', reason: 'keep setuid/setgid bits when a file is modified' },
  { bit: 5, name: 'KILL', reason: 'signal processes of other users (only within the container\'s pid namespace)' },
  { bit: 6, name: 'SETGID', reason: 'setgid/setgroups: switch group ids, needed by su, login, daemons dropping root' },
  { bit: 7, name: 'SETUID', reason: 'setuid: switch user ids, needed by su, login, daemons dropping root' },
  { bit: 8, name: 'SETPCAP', reason: 'drop from the bounding set and pass capabilities to other sets' },
  { bit: 9, name: 'LINUX_IMMUTABLE', reason: 'set the immutable and append-only file attributes (chattr +i)' },
  { bit: 10, name: 'NET_BIND_SERVICE', reason: 'bind TCP/UDP ports below 1024 (web servers on :80)' },
  { bit: 11, name: 'NET_BROADCAST', reason: 'socket broadcast and multicast listening (unused by the kernel today)' },
  { bit: 12, name: 'NET_ADMIN', reason: 'configure interfaces, routes, firewall; with --network host that is the host\'s network' },
  { bit: 13, name: 'NET_RAW', reason: 'raw and packet sockets: ping, but also ARP/DNS spoofing of neighbours on the bridge (CIS 5.3)' },
  { bit: 14, name: 'IPC_LOCK', reason: 'mlock(2) memory and SHM_LOCK: pins host RAM beyond rlimits' },
  { bit: 15, name: 'IPC_OWNER', reason: 'bypass permission checks on System V IPC objects' },
  { bit: 16, name: 'SYS_MODULE', reason: 'load kernel modules: arbitrary code in the host kernel' },
  { bit: 17, name: 'SYS_RAWIO', reason: 'iopl/ioperm and raw device I/O (/dev/mem, /dev/port): reads and writes host memory' },
  { bit: 18, name: 'SYS_CHROOT', reason: 'chroot(2); harmless inside the container\'s own root' },
  { bit: 19, name: 'SYS_PTRACE', reason: 'ptrace and /proc/<pid>/mem of any process in the pid namespace' },
  { bit: 20, name: 'SYS_PACCT', reason: 'switch process accounting (acct(2)), a host-wide setting' },
  { bit: 21, name: 'SYS_ADMIN', reason: 'mount, pivot_root, setns, bpf, ...: "the new root"; cgroup release_agent escape (CVE-2022-0492)' },
  { bit: 22, name: 'SYS_BOOT', reason: 'reboot(2) and kexec_load(2) (reboot is namespaced only in a pid namespace)' },
  { bit: 23, name: 'SYS_NICE', reason: 'raise priorities, real-time scheduling, move pages of other processes: starves the host' },
  { bit: 24, name: 'SYS_RESOURCE', reason: 'exceed rlimits, quotas and reserved disk space' },
  { bit: 25, name: 'SYS_TIME', reason: 'set the system clock, which is not namespaced (time namespaces only offset monotonic/boottime)' },
  { bit: 26, name: 'SYS_TTY_CONFIG', reason: 'vhangup(2) and tty configuration' },
  { bit: 27, name: 'MKNOD', reason: 'mknod(2) device nodes; the device cgroup still decides which can be opened' },
  { bit: 28, name: 'LEASE', reason: 'take leases on files the caller does not own' },
  { bit: 29, name: 'AUDIT_WRITE', reason: 'write to the kernel audit log (login and sshd do)' },
  { bit: 30, name: 'AUDIT_CONTROL', reason: 'configure the host\'s audit rules, or switch auditing off' },
  { bit: 31, name: 'SETFCAP', reason: 'set file capabilities (setcap), and map uid 0 when creating a user namespace' },
  { bit: 32, name: 'MAC_OVERRIDE', reason: 'override a mandatory access control policy (Smack)' },
  { bit: 33, name: 'MAC_ADMIN', reason: 'change the MAC policy (AppArmor/SELinux/Smack) of the host' },
  { bit: 34, name: 'SYSLOG', reason: 'read and clear the kernel log; kernel addresses help exploits (kptr_restrict)' },
  { bit: 35, name: 'WAKE_ALARM', reason: 'set timers that wake the machine from suspend' },
  { bit: 36, name: 'BLOCK_SUSPEND', reason: 'prevent the host from suspending (epoll EPOLLWAKEUP)' },
  { bit: 37, name: 'AUDIT_READ', reason: 'read the audit log over netlink multicast' },
  { bit: 38, name: 'PERFMON', reason: 'perf_event_open and other performance monitoring of the whole system' },
  { bit: 39, name: 'BPF', reason: 'load BPF programs and maps: a large kernel attack surface' },
  { bit: 40, name: 'CHECKPOINT_RESTORE', reason: 'choose pids on clone3, read other processes\' /proc map_files (CRIU)' },
];

const BY_NAME = new Map(CAPABILITIES.map((c) => [c.name, c]));

/** Docker's default set: what a process needs to behave like root in a typical image. */
export const DOCKER_DEFAULT_CAPS: readonly string[] = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];

export const ALL_CAPS: readonly string[] = CAPABILITIES.map((c) => `CAP_${c.name}`);
export const ALL_MASK = (1n << BigInt(CAPABILITIES.length)) - 1n;

/**
 * Canonical `CAP_X` for `x`, `X`, `cap_x`, `CAP_X`, or `ALL` (when allowed).
 * `where` names the flag or JSON field in the error.
 */
export function normalizeCap(raw: string, where: string, allowAll = true): string {
  const up = raw.trim().toUpperCase();
  if (allowAll && up === 'ALL') return 'ALL';
  const bare = up.startsWith('CAP_') ? up.slice(4) : up;
  if (!BY_NAME.has(bare)) {
    const msg = `unknown capability "${raw}" (see capabilities(7); names with or without CAP_${allowAll ? ', or ALL' : ''})`;
    if (where.startsWith('-')) throw new UsageError(`${where}: ${msg}`);
    throw new SpecError(where, msg);
  }
  return `CAP_${bare}`;
}

export function capBit(name: string): number {
  const info = BY_NAME.get(name.startsWith('CAP_') ? name.slice(4) : name);
  if (!info) throw new Error(`not a capability: ${name}`);
  return info.bit;
}

/** Mask of `names` (canonical or not); `field` is named on an unknown name. */
export function capMask(names: readonly string[] | undefined, field: string): bigint {
  let m = 0n;
  (names ?? []).forEach((n, i) => {
    m |= 1n << BigInt(capBit(normalizeCap(n, `${field}[${i}]`, false)));
  });
  return m;
}

export function maskNames(mask: bigint): string[] {
  return CAPABILITIES.filter((c) => (mask >> BigInt(c.bit)) & 1n).map((c) => `CAP_${c.name}`);
}

export function maskHex(mask: bigint): string {
  return mask.toString(16).padStart(16, '0');
}

/**
 * docker run's rules for combining --cap-add and --cap-drop with the default set:
 * ALL in --cap-add means every capability except the dropped ones; ALL in --cap-drop
 * means only the added ones; otherwise defaults minus drops plus adds (an add wins over a
 * drop of the same name).
 */
export function combineCaps(base: readonly string[], add: readonly string[], drop: readonly string[]): string[] {
  const a = add.map((n) => normalizeCap(n, '--cap-add'));
  const d = drop.map((n) => normalizeCap(n, '--cap-drop'));
  let out: string[];
  if (a.includes('ALL')) out = ALL_CAPS.filter((c) => !d.includes(c));
  else if (d.includes('ALL')) out = a;
  else out = [...base.filter((c) => !d.includes(c)), ...a];
  return ALL_CAPS.filter((c) => out.includes(c));
}

/** The spec's capability object for one set of names (bounding = permitted = effective). */
export function capsFor(names: readonly string[]): Capabilities {
  return { bounding: [...names], effective: [...names], permitted: [...names], inheritable: [], ambient: [] };
}

// --cap-add and --cap-drop are two flags but one decision: keep what each said and
// recompute, so the result does not depend on which row the CLI applies first.
const requested = new WeakMap<Spec, { add: string[]; drop: string[] }>();

function applyCapFlag(spec: Spec, which: 'add' | 'drop', value: unknown): void {
  const list = (Array.isArray(value) ? value : [value]).map(String);
  const r = requested.get(spec) ?? { add: [], drop: [] };
  r[which] = list;
  requested.set(spec, r);
  spec.process.capabilities = capsFor(combineCaps(DOCKER_DEFAULT_CAPS, r.add, r.drop));
}

export const flags: FlagDef[] = [
  {
    syntax: '--cap-add <capability>',
    help: 'add a Linux capability (CHOWN or CAP_CHOWN, or ALL)',
    docker: '--cap-add',
    control: 'capabilities',
    repeatable: true,
    apply: (spec, value) => applyCapFlag(spec, 'add', value),
  },
  {
    syntax: '--cap-drop <capability>',
    help: 'drop a Linux capability (or ALL) from the default 14',
    docker: '--cap-drop',
    control: 'capabilities',
    repeatable: true,
    apply: (spec, value) => applyCapFlag(spec, 'drop', value),
  },
];

export interface CapMasks {
  bounding: bigint;
  effective: bigint;
  permitted: bigint;
  inheritable: bigint;
  ambient: bigint;
  /** ambient entries dropped because they are not permitted and inheritable */
  ignoredAmbient: bigint;
}

/**
 * What a container can be given outside a user namespace: capset(2) cannot raise permitted
 * beyond the caller's (CapEff here, as tsrun is root), and after execve root's permitted
 * set is its bounding set, which can only shrink (CapBnd). Inside a user namespace the
 * child starts with every capability of that namespace. Planning without CAP_SYS_ADMIN
 * (explain/--dry-run as a user, unit tests) cannot run the plan anyway: everything, so the
 * plan shows what was asked instead of judging it by this process's capabilities.
 */
export function availableCaps(spec: Spec, host: { capEff: bigint; capBnd?: bigint }): bigint {
  const planningOnly = ((host.capEff >> 21n) & 1n) === 0n;
  if (hasUserNamespace(spec) || planningOnly) return ALL_MASK;
  return host.capEff & (host.capBnd ?? ALL_MASK) & ALL_MASK;
}

/**
 * --privileged and --cap-add ALL mean "every capability tsrun can give", as with docker: the
 * spec built from those flags lists exactly that, so `inspect` and the state show what the
 * container has (here root lacks CAP_SYS_RESOURCE). Returns the names left out. Bundles are
 * not trimmed: a capability they list that tsrun cannot give is refused (computeMasks).
 */
export function trimAllToHost(spec: Spec, host: { capEff: bigint; capBnd?: bigint }): string[] {
  const c = spec.process.capabilities;
  if (!c) return [];
  const wanted = capMask(c.bounding, 'process.capabilities.bounding') | capMask(c.permitted, 'process.capabilities.permitted');
  if ((wanted & ALL_MASK) !== ALL_MASK) return [];
  const avail = availableCaps(spec, host);
  if (avail === ALL_MASK) return [];
  const keep = (names: string[] | undefined) => names && maskNames(capMask(names, 'process.capabilities') & avail);
  spec.process.capabilities = {
    ...c,
    bounding: keep(c.bounding),
    effective: keep(c.effective),
    permitted: keep(c.permitted),
    inheritable: keep(c.inheritable),
    ambient: keep(c.ambient),
  } as Capabilities;
  return maskNames(ALL_MASK & ~avail);
}

/**
 * The masks init applies. A capability tsrun cannot give (see availableCaps) is refused,
 * naming it: dropping it silently would start a container with fewer powers than its
 * config says, which then fails later and obscurely (runc fails at capset with EPERM).
 */
export function computeMasks(spec: Spec, hostCapEff: bigint, hostCapBnd?: bigint): CapMasks {
  const c = spec.process.capabilities ?? capsFor(DOCKER_DEFAULT_CAPS);
  const f = 'process.capabilities';
  const m = {
    bounding: capMask(c.bounding, `${f}.bounding`),
    effective: capMask(c.effective, `${f}.effective`),
    permitted: capMask(c.permitted, `${f}.permitted`),
    inheritable: capMask(c.inheritable, `${f}.inheritable`),
    ambient: capMask(c.ambient, `${f}.ambient`),
  };
  // capset(2): effective must be a subset of permitted; PR_CAP_AMBIENT_RAISE needs the
  // capability in both permitted and inheritable.
  const extraEff = m.effective & ~m.permitted;
  if (extraEff) throw new SpecError(`${f}.effective`, `${maskNames(extraEff).join(', ')} not in permitted (capset(2) EPERM)`);
  // An ambient capability that is not both permitted and inheritable cannot be raised
  // (PR_CAP_AMBIENT_RAISE: EPERM). runc skips such entries, and `runc spec` itself writes
  // ambient without inheritable, so bundles rely on that: tsrun drops them too, and says so.
  const ignoredAmbient = m.ambient & ~(m.permitted & m.inheritable);
  m.ambient &= ~ignoredAmbient;
  const available = availableCaps(spec, { capEff: hostCapEff, ...(hostCapBnd !== undefined ? { capBnd: hostCapBnd } : {}) });
  const unavailable = (m.bounding | m.permitted | m.inheritable) & ~available;
  if (unavailable) {
    const one = unavailable === (unavailable & -unavailable);
    throw new SpecError(
      f,
      `${maskNames(unavailable).join(', ')} requested but tsrun itself does not hold ${one ? 'it' : 'them'} ` +
        `(CapEff ${maskHex(hostCapEff)}, CapBnd ${maskHex(hostCapBnd ?? ALL_MASK)}); capset would fail with EPERM. ` +
        `Drop ${one ? 'it' : 'them'}, or use --userns-remap to hold ${one ? 'it' : 'them'} inside a user namespace only`,
    );
  }
  return { ...m, ignoredAmbient };
}

/** One line per capability: kept or dropped, and what it means. `explain` prints this. */
export function capabilityReport(spec: Spec, hostCapEff: bigint, hostCapBnd?: bigint): string[] {
  const m = computeMasks(spec, hostCapEff, hostCapBnd);
  return CAPABILITIES.map((c) => {
    const bit = 1n << BigInt(c.bit);
    const state = m.bounding & bit ? 'keep' : 'drop';
    return `${state} ${`CAP_${c.name}`.padEnd(24)} ${c.reason}`;
  });
}

function step(phase: ChildStep['phase'], op: ChildStep['op'], ints: bigint[], text: string, why: string): ChildStep {
  return { where: 'child', phase, op, ints, strs: [], text, why, control: 'capabilities' };
}

export const control: Control = {
  id: 'capabilities',
  title: 'Linux capabilities (bounding, effective, permitted, inheritable, ambient)',
  ref: 'CIS 5.3 (restrict Linux kernel capabilities), CIS 5.4 (no privileged containers)',
  validate(ctx: BuildContext): void {
    computeMasks(ctx.spec, ctx.host.capEff, ctx.host.capBnd);
  },
  steps(ctx: BuildContext): Step[] {
    const m = computeMasks(ctx.spec, ctx.host.capEff, ctx.host.capBnd);
    const dropped = maskNames(ALL_MASK & ~m.bounding).map((n) => n.slice(4));
    const n = maskNames(m.bounding).length;
    return [
      step(
        'user',
        'KEEPCAPS',
        [1n],
        'prctl(PR_SET_KEEPCAPS, 1)',
        'capabilities(7): keep the permitted set when setresuid leaves uid 0, so capset can set it after the switch',
      ),
      step(
        'user',
        'CAPBSET',
        [m.bounding],
        `prctl(PR_CAPBSET_DROP, cap) for ${dropped.length ? dropped.join(' ') : 'none'}`,
        `bounding set keeps ${n} of ${CAPABILITIES.length}: root's powers after execve are bounding|inheritable; dropped while CAP_SETPCAP is still held (CIS 5.3)`,
      ),
      step(
        'caps',
        'CAPSET',
        [m.effective, m.permitted, m.inheritable, m.ambient],
        `capset(eff=${maskHex(m.effective)}, prm=${maskHex(m.permitted)}, inh=${maskHex(m.inheritable)}); ` +
          `prctl(PR_CAP_AMBIENT_RAISE) for ${maskNames(m.ambient).join(' ') || 'none'}`,
        'after the uid change (setresuid clears effective); inheritable empty so no file can inherit caps at execve (CVE-2022-24769)' +
          (m.ignoredAmbient ? `; ambient ${maskNames(m.ignoredAmbient).join(' ')} ignored: not permitted and inheritable, so PR_CAP_AMBIENT_RAISE would fail (as runc, which skips them)` : ''),
      ),
    ];
  },
};
