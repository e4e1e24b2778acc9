// What the kernel says about a process: the facts `tsrun audit` judges. Everything here is
// read from /proc/PID and the cgroup filesystem, never from a runtime's records, so the same
// reader audits a container started by tsrun, runc, podman, Docker or containerd — and shows
// what the kernel applied, not what a runtime says it configured.
//
// Parsing is pure (text → facts) so unit tests feed fixture text; `readFacts` does the I/O.
// Nothing here opens a path under /proc/PID/root (trust-boundary rule 2): every fact comes
// from the kernel's own files about the process.
import { childProcess } from '../builtins.js';
import { readFileSync, readlinkSync } from 'node:fs';
import { join, posix } from 'node:path';
import { UsageError } from '../errors.js';
import { describeError } from '../kernel/errno.js';
import { hostLayout, parseProcCgroup, procCgroupPathFor, type CgroupLayout, type ProcCgroupLine } from '../controls/cgroups/mode.js';

/** One line of /proc/PID/mountinfo (proc(5)), with what the audit needs beyond mode.ts's parser. */
export interface MountLine {
  mountId: number;
  parentId: number;
  /** st_dev of the filesystem, "major:minor": tells which host filesystem a bind comes from */
  dev: string;
  /** the path inside that filesystem which is mounted (a bind's source, relative to its fs) */
  root: string;
  mountPoint: string;
  mountOptions: string[];
  /** optional fields: shared:N, master:N, propagate_from:N, unbindable */
  optional: string[];
  fsType: string;
  source: string;
  superOptions: string[];
}

// mountinfo escapes space, tab, newline and backslash as octal (proc(5)).
const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

export function parseMountLines(text: string): MountLine[] {
  const out: MountLine[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const f = line.split(' ');
    const sep = f.indexOf('-', 6);
    if (sep < 0 || f.length < sep + 4) continue;
    out.push({
      mountId: Number(f[0]),
      parentId: Number(f[1]),
      dev: f[2] ?? '',
      root: unescape(f[3] ?? ''),
      mountPoint: unescape(f[4] ?? ''),
      mountOptions: (f[5] ?? '').split(','),
      optional: f.slice(6, sep),
      fsType: f[sep + 1] ?? '',
      source: unescape(f[sep + 2] ?? ''),
      superOptions: (f[sep + 3] ?? '').split(','),
    });
  }
  return out;
}

export interface StatusFacts {
  name: string;
  /** real, effective, saved, fs uid */
  uid: number[];
  capEff: bigint;
  capPrm: bigint;
  capBnd: bigint;
  noNewPrivs: boolean;
  /** 0 disabled, 1 strict, 2 filter (proc(5) Seccomp) */
  seccomp: number;
  seccompFilters?: number;
}

/** /proc/PID/status (proc(5)): the fields the audit judges. */
export function parseStatus(text: string): StatusFacts {
  const f = new Map<string, string>();
  for (const line of text.split('\n')) {
    const i = line.indexOf(':');
    if (i > 0) f.set(line.slice(0, i), line.slice(i + 1).trim());
  }
  const hex = (k: string) => BigInt(`0x${f.get(k) ?? '0'}`);
  return {
    name: f.get('Name') ?? '',
    uid: (f.get('Uid') ?? '').split(/\s+/).filter(Boolean).map(Number),
    capEff: hex('CapEff'),
    capPrm: hex('CapPrm'),
    capBnd: hex('CapBnd'),
    noNewPrivs: f.get('NoNewPrivs') === '1',
    seccomp: Number(f.get('Seccomp') ?? 0),
    ...(f.has('Seccomp_filters') ? { seccompFilters: Number(f.get('Seccomp_filters')) } : {}),
  };
}

export interface IdMapLine {
  inside: number;
  outside: number;
  count: number;
}

/** /proc/PID/uid_map (user_namespaces(7)), as seen from the reader's user namespace. */
export function parseIdMap(text: string): IdMapLine[] {
  return text
    .split('\n')
    .map((l) => l.trim().split(/\s+/).map(Number))
    .filter((p) => p.length === 3 && p.every(Number.isFinite))
    .map(([inside, outside, count]) => ({ inside: inside!, outside: outside!, count: count! }));
}

export interface Limit {
  soft: string;
  hard: string;
}

const LIMIT_KEYS: Record<string, string> = {
  'Max open files': 'nofile',
  'Max processes': 'nproc',
  'Max core file size': 'core',
  'Max locked memory': 'memlock',
  'Max stack size': 'stack',
  'Max file size': 'fsize',
  'Max cpu time': 'cpu',
  'Max data size': 'data',
  'Max address space': 'as',
  'Max file locks': 'locks',
  'Max pending signals': 'sigpending',
  'Max msgqueue size': 'msgqueue',
  'Max nice priority': 'nice',
  'Max realtime priority': 'rtprio',
  'Max realtime timeout': 'rttime',
  'Max resident set': 'rss',
};

/** /proc/PID/limits: docker's ulimit names → soft/hard as the kernel prints them. */
export function parseLimits(text: string): Record<string, Limit> {
  const out: Record<string, Limit> = {};
  for (const line of text.split('\n')) {
    const name = Object.keys(LIMIT_KEYS).find((k) => line.startsWith(k));
    if (!name) continue;
    const [soft, hard] = line.slice(name.length).trim().split(/\s+/);
    out[LIMIT_KEYS[name]!] = { soft: soft ?? '', hard: hard ?? '' };
  }
  return out;
}

/** The cgroup files the audit reads, by what they limit; `file` is the host path read. */
export interface CgroupValue {
  file: string;
  value: string;
}

export interface CgroupFacts {
  /** controller → the process's cgroup path in that controller's hierarchy */
  paths: Record<string, string>;
  memory?: CgroupValue;
  cpu?: CgroupValue;
  pids?: CgroupValue;
  /** v1 devices.list; absent on v2, where device access is a BPF program (not readable as text) */
  devices?: CgroupValue;
}

/** Which file holds each limit in each cgroup version (cgroups(7), Documentation/admin-guide/cgroup-v2.rst). */
export const CGROUP_FILES = {
  memory: { 1: 'memory.limit_in_bytes', 2: 'memory.max' },
  cpu: { 1: 'cpu.shares', 2: 'cpu.weight' },
  pids: { 1: 'pids.max', 2: 'pids.max' },
  devices: { 1: 'devices.list', 2: undefined },
} as const;

/** Host path of a cgroup directory: the hierarchy's mount point plus the path /proc/PID/cgroup gives. */
export function cgroupDir(mountPoint: string, mountRoot: string, path: string): string {
  const rel = mountRoot !== '/' && (path === mountRoot || path.startsWith(mountRoot + '/')) ? path.slice(mountRoot.length) : path;
  return posix.join(mountPoint, rel || '/');
}

/** Where each limit of a process lives, per the host's layout (pure). */
export function cgroupFiles(layout: CgroupLayout, lines: ProcCgroupLine[]): { paths: Record<string, string>; files: Partial<Record<keyof typeof CGROUP_FILES, string>> } {
  const paths: Record<string, string> = {};
  const files: Partial<Record<keyof typeof CGROUP_FILES, string>> = {};
  for (const ctrl of Object.keys(CGROUP_FILES) as (keyof typeof CGROUP_FILES)[]) {
    const h = layout.controllers[ctrl];
    if (!h) continue;
    const p = procCgroupPathFor(h, lines);
    if (p === undefined) continue;
    paths[ctrl] = p;
    const name = CGROUP_FILES[ctrl][h.version];
    if (name) files[ctrl] = join(cgroupDir(h.mountPoint, h.root, p), name);
  }
  return { paths, files };
}

export type NsName = 'mnt' | 'net' | 'pid' | 'ipc' | 'uts' | 'user' | 'cgroup';
export const NS_NAMES: readonly NsName[] = ['mnt', 'net', 'pid', 'ipc', 'uts', 'user', 'cgroup'];

/** LSM labels: attr/apparmor/current (5.1+), else the shared attr/current. */
export interface LsmFacts {
  apparmor?: string;
  current?: string;
}

export interface ProcessFacts {
  pid: number;
  status: StatusFacts;
  uidMap: IdMapLine[];
  mounts: MountLine[];
  /** "net:[4026531840]" as readlink(2) of /proc/PID/ns/NAME gives */
  ns: Partial<Record<NsName, string>>;
  cgroup: CgroupFacts;
  limits: Record<string, Limit>;
  lsm: LsmFacts;
  /** the IPv4 addresses of the process's network namespace (/proc/PID/net/fib_trie, LOCAL /32s) */
  addresses: string[];
}

/** What the container is compared with: the auditing process's own view of the host. */
export interface HostView {
  ns: Partial<Record<NsName, string>>;
  mounts: MountLine[];
  /** /proc/sys/kernel/cap_last_cap */
  capLastCap: number;
  /**
   * the auditing process's bounding set: every capability root holds on this host, which is
   * what --privileged gives (root may lack some, e.g. CAP_SYS_RESOURCE here)
   */
  capBnd: bigint;
  /** /sys/kernel/security/lsm */
  lsms: string[];
  /**
   * the auditing tsrun's own limits: what a container started from the same shell inherits
   * when nobody sets one (Node raises its soft nofile to the hard limit, and so does a
   * container cloned from it)
   */
  limits: Record<string, Limit>;
  /** the auditing process's own cgroup paths (a container must not sit in them) */
  cgroupPaths: Record<string, string>;
  /** the kernel's DNAT rules (iptables-save -t nat): published ports; undefined when iptables cannot be read */
  dnat?: DnatRule[];
}

/** One DNAT rule: traffic to hostIP:hostPort (hostIP '' = any address) goes to toAddr:toPort. */
export interface DnatRule {
  hostIP: string;
  hostPort: number;
  protocol: string;
  toAddr: string;
  toPort: number;
}

/** The nat table's DNAT rules as iptables-save prints them (portmap's, docker-proxy-less Docker's, …). */
export function parseDnat(text: string): DnatRule[] {
  const out: DnatRule[] = [];
  for (const l of text.split('\n')) {
    if (!l.startsWith('-A ') || !/ -j DNAT /.test(l)) continue;
    const to = / --to-destination ([\d.]+):(\d+)/.exec(l);
    const dport = / --dport (\d+)/.exec(l);
    if (!to || !dport) continue;
    const d = / -d ([\d.]+)(\/32)? /.exec(l);
    out.push({ hostIP: d?.[1] ?? '', hostPort: Number(dport[1]), protocol: / -p (\w+)/.exec(l)?.[1] ?? 'tcp', toAddr: to[1]!, toPort: Number(to[2]) });
  }
  return out;
}

/** The LOCAL /32 addresses in a fib_trie (proc(5) /proc/net/fib_trie), loopback left out. */
export function parseFibLocal(text: string): string[] {
  const out = new Set<string>();
  const lines = text.split('\n');
  for (let i = 1; i < lines.length; i++) {
    if (!/\/32 host LOCAL/.test(lines[i]!)) continue;
    const ip = /([\d.]+)\s*$/.exec(lines[i - 1] ?? '')?.[1];
    if (ip && !ip.startsWith('127.')) out.add(ip);
  }
  return [...out];
}

function read(path: string): string {
  return readFileSync(path, 'utf8');
}

function tryRead(path: string): string | undefined {
  try {
    return read(path);
  } catch {
    return undefined;
  }
}

function readNs(pid: number | 'self'): Partial<Record<NsName, string>> {
  const ns: Partial<Record<NsName, string>> = {};
  for (const n of NS_NAMES) {
    try {
      ns[n] = readlinkSync(`/proc/${pid}/ns/${n}`);
    } catch {
      /* a kernel without this namespace type */
    }
  }
  return ns;
}

// /proc/PID/ns/* needs PTRACE_MODE_READ access to the process (ptrace(2), "Ptrace access mode checking")
function denied(): string {
  return process.getuid?.() === 0
    ? ' (ptrace-read access denied: it holds capabilities this root lacks, or an LSM refuses)'
    : ' (audit needs root to read another user\'s process)';
}

/** Reads every fact about PID; a missing or unreadable process is a usage error naming it. */
export function readFacts(pid: number, layout: CgroupLayout = hostLayout()): ProcessFacts {
  let statusText: string;
  try {
    statusText = read(`/proc/${pid}/status`);
    // the ns links need ptrace-read access: fail here, clearly, rather than audit half a process
    readlinkSync(`/proc/${pid}/ns/mnt`);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UsageError(`--pid ${pid}: ESRCH (no such process)`, { cause: e });
    throw new UsageError(`--pid ${pid}: /proc/${pid}: ${describeError(e)}${code === 'EACCES' || code === 'EPERM' ? denied() : ''}`, { cause: e });
  }
  const lines = parseProcCgroup(tryRead(`/proc/${pid}/cgroup`) ?? '');
  const { paths, files } = cgroupFiles(layout, lines);
  const cgroup: CgroupFacts = { paths };
  for (const [k, file] of Object.entries(files) as [keyof typeof CGROUP_FILES, string][]) {
    const v = tryRead(file);
    if (v !== undefined) cgroup[k] = { file, value: v.trim() };
  }
  const apparmor = tryRead(`/proc/${pid}/attr/apparmor/current`)?.replace(/\0/g, '').trim();
  const current = tryRead(`/proc/${pid}/attr/current`)?.replace(/\0/g, '').trim();
  return {
    pid,
    status: parseStatus(statusText),
    uidMap: parseIdMap(tryRead(`/proc/${pid}/uid_map`) ?? ''),
    mounts: parseMountLines(tryRead(`/proc/${pid}/mountinfo`) ?? ''),
    ns: readNs(pid),
    cgroup,
    limits: parseLimits(tryRead(`/proc/${pid}/limits`) ?? ''),
    lsm: { ...(apparmor ? { apparmor } : {}), ...(current ? { current } : {}) },
    addresses: parseFibLocal(tryRead(`/proc/${pid}/net/fib_trie`) ?? ''),
  };
}

/**
 * Active LSMs: /sys/kernel/security/lsm when securityfs is mounted; otherwise the two that
 * label containers, from their own switches (AppArmor's module parameter, selinuxfs).
 */
function activeLsms(): string[] {
  const list = tryRead('/sys/kernel/security/lsm');
  if (list !== undefined) return list.split(',').map((s) => s.trim()).filter(Boolean);
  const out: string[] = [];
  if (tryRead('/sys/module/apparmor/parameters/enabled')?.trim() === 'Y') out.push('apparmor');
  if (tryRead('/sys/fs/selinux/enforce') !== undefined) out.push('selinux');
  return out;
}

/** The host as the auditing process sees it. */
export function readHostView(layout: CgroupLayout = hostLayout()): HostView {
  const lines = parseProcCgroup(tryRead('/proc/self/cgroup') ?? '');
  return {
    ns: readNs('self'),
    mounts: parseMountLines(read('/proc/self/mountinfo')),
    capLastCap: Number(tryRead('/proc/sys/kernel/cap_last_cap') ?? '40'),
    capBnd: parseStatus(read('/proc/self/status')).capBnd,
    lsms: activeLsms(),
    limits: parseLimits(tryRead('/proc/self/limits') ?? ''),
    cgroupPaths: cgroupFiles(layout, lines).paths,
    ...readDnat(),
  };
}

/** The nat table through iptables-save, the field's tool (nftables' iptables-nft included). */
function readDnat(): { dnat?: DnatRule[] } {
  const r = childProcess().spawnSync('iptables-save', ['-t', 'nat'], { encoding: 'utf8', timeout: 5000 });
  return r.status === 0 ? { dnat: parseDnat(r.stdout) } : {};
}

/**
 * The host path a container's mount shows, when it is a bind of a filesystem the host has
 * mounted: the host mount of the same device whose root is the longest prefix of the
 * container mount's root. Undefined for a filesystem the host does not have mounted (the
 * container's own tmpfs, proc, overlay root...).
 */
export function hostPathOf(m: MountLine, host: MountLine[]): string | undefined {
  let best: MountLine | undefined;
  for (const h of host) {
    if (h.dev !== m.dev) continue;
    const inside = h.root === '/' || m.root === h.root || m.root.startsWith(h.root + '/');
    if (!inside) continue;
    if (!best || h.root.length > best.root.length || (h.root.length === best.root.length && h.mountPoint.length < best.mountPoint.length)) best = h;
  }
  if (!best) return undefined;
  const rest = best.root === '/' ? m.root : m.root.slice(best.root.length);
  return rest === '' || rest === '/' ? best.mountPoint : posix.join(best.mountPoint, rest);
}
