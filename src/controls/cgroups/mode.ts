// Which cgroup hierarchy holds which controller, read from /proc/self/mountinfo.
//
// Three layouts exist in the wild (cgroups(7), "CGROUPS VERSION 1 AND VERSION 2"):
//  - v2:     one cgroup2 mount (usually /sys/fs/cgroup) holds every controller;
//  - v1:     one cgroup v1 mount per controller (or per co-mounted group, e.g. cpu,cpuacct);
//  - hybrid: v1 mounts for the controllers plus a cgroup2 mount (systemd puts it at
//            /sys/fs/cgroup/unified) that holds whatever controller v1 does not bind.
// A controller can be bound to one hierarchy only, so on hybrid hosts each controller
// is driven where the kernel has it: that is the whole point of this module.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export type CgroupMode = 'v1' | 'v2' | 'hybrid';

export interface MountInfoEntry {
  mountId: number;
  parentId: number;
  /** the path inside the filesystem that is mounted (non-`/` inside a cgroup namespace or for binds) */
  root: string;
  mountPoint: string;
  mountOptions: string[];
  fsType: string;
  source: string;
  superOptions: string[];
}

/** One mounted cgroup hierarchy. */
export interface Hierarchy {
  version: 1 | 2;
  mountPoint: string;
  /** mountinfo's root field: the cgroup this mount shows as its top */
  root: string;
  /** controllers bound to this hierarchy (v1: from the mount options; v2: cgroup.controllers) */
  controllers: string[];
  /** v1 mount options that name the hierarchy, e.g. `cpu,cpuacct` or `name=systemd` */
  options: string[];
}

export interface CgroupLayout {
  mode: CgroupMode;
  /** v1 hierarchies (empty on pure v2) */
  v1: Hierarchy[];
  /** the cgroup2 hierarchy, when mounted */
  unified?: Hierarchy;
  /** where each controller lives; controllers the kernel lacks are absent */
  controllers: Record<string, Hierarchy>;
}

/** Controllers that are v1-only names or meaningless to tsrun's limits; they are listed, not driven. */
const NAMED_HIERARCHY = /^name=/;

// mountinfo escapes space, tab, newline and backslash as octal (proc(5)).
function unescapeMountField(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Parses the text of /proc/<pid>/mountinfo (proc(5)). Malformed lines are skipped. */
export function parseMountInfo(text: string): MountInfoEntry[] {
  const out: MountInfoEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const fields = line.split(' ');
    const sep = fields.indexOf('-', 6);
    if (sep < 0 || fields.length < sep + 4) continue;
    out.push({
      mountId: Number(fields[0]),
      parentId: Number(fields[1]),
      root: unescapeMountField(fields[3] ?? ''),
      mountPoint: unescapeMountField(fields[4] ?? ''),
      mountOptions: (fields[5] ?? '').split(','),
      fsType: fields[sep + 1] ?? '',
      source: unescapeMountField(fields[sep + 2] ?? ''),
      superOptions: (fields[sep + 3] ?? '').split(','),
    });
  }
  return out;
}

/** Known v1 controllers; a v1 mount's super options name them among generic options (rw, relatime...). */
export const V1_CONTROLLERS = [
  'cpuset', 'cpu', 'cpuacct', 'blkio', 'memory', 'devices', 'freezer', 'net_cls', 'perf_event',
  'net_prio', 'hugetlb', 'pids', 'rdma', 'misc',
] as const;

/**
 * Builds the layout from mountinfo text. `unifiedControllers` is the content of the cgroup2
 * mount's cgroup.controllers (the root's controllers are what the kernel left to v2).
 * The same hierarchy may be mounted more than once (bind mounts, container views); the first
 * mount of each hierarchy whose root is `/`, else the first one, is used.
 */
export function detectLayout(mountinfo: string, unifiedControllers: string): CgroupLayout {
  const entries = parseMountInfo(mountinfo);
  const v1: Hierarchy[] = [];
  let unified: Hierarchy | undefined;
  const seenV1 = new Map<string, Hierarchy>();
  for (const e of entries) {
    if (e.fsType === 'cgroup2') {
      if (!unified || (unified.root !== '/' && e.root === '/')) {
        unified = {
          version: 2,
          mountPoint: e.mountPoint,
          root: e.root,
          controllers: unifiedControllers.split(/\s+/).filter(Boolean),
          options: [],
        };
      }
    } else if (e.fsType === 'cgroup') {
      const known = new Set<string>(V1_CONTROLLERS);
      const options = e.superOptions.filter((o) => known.has(o) || NAMED_HIERARCHY.test(o));
      const key = [...options].sort().join(',');
      const prev = seenV1.get(key);
      if (prev && !(prev.root !== '/' && e.root === '/')) continue;
      const h: Hierarchy = {
        version: 1,
        mountPoint: e.mountPoint,
        root: e.root,
        controllers: options.filter((o) => !NAMED_HIERARCHY.test(o)),
        options,
      };
      if (prev) v1.splice(v1.indexOf(prev), 1, h);
      else v1.push(h);
      seenV1.set(key, h);
    }
  }
  const controllers: Record<string, Hierarchy> = {};
  for (const h of v1) for (const c of h.controllers) controllers[c] = h;
  if (unified) for (const c of unified.controllers) if (!controllers[c]) controllers[c] = unified;
  // A v1 controller hierarchy means v1 semantics; a cgroup2 mount next to v1 ones is hybrid.
  // A name=systemd-only v1 mount next to cgroup2 (systemd's "legacy" tracking) is still v2 for
  // resource control, because every controller is on the unified side.
  const v1WithControllers = v1.filter((h) => h.controllers.length > 0);
  let mode: CgroupMode;
  if (v1WithControllers.length === 0 && unified) mode = 'v2';
  else if (unified) mode = 'hybrid';
  else mode = 'v1';
  if (!unified && v1.length === 0) throw new Error('no cgroup filesystem is mounted (mountinfo has no cgroup or cgroup2 entry)');
  return { mode, v1, ...(unified ? { unified } : {}), controllers };
}

let cached: CgroupLayout | undefined;

/** The host's layout (cached): reads /proc/self/mountinfo and the cgroup2 root's cgroup.controllers. */
export function hostLayout(refresh = false): CgroupLayout {
  if (cached && !refresh) return cached;
  const mountinfo = readFileSync('/proc/self/mountinfo', 'utf8');
  const cg2 = parseMountInfo(mountinfo).find((e) => e.fsType === 'cgroup2');
  let ctrl = '';
  if (cg2) {
    try {
      ctrl = readFileSync(join(cg2.mountPoint, 'cgroup.controllers'), 'utf8');
    } catch {
      ctrl = '';
    }
  }
  cached = detectLayout(mountinfo, ctrl);
  return cached;
}

/** Parses /proc/<pid>/cgroup: hierarchy id → controllers → path (cgroups(7)). */
export interface ProcCgroupLine {
  id: number;
  controllers: string[];
  path: string;
}

export function parseProcCgroup(text: string): ProcCgroupLine[] {
  const out: ProcCgroupLine[] = [];
  for (const line of text.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    out.push({ id: Number(m[1]), controllers: m[2] ? m[2].split(',') : [], path: m[3] ?? '/' });
  }
  return out;
}

/** The cgroup path (inside hierarchy `h`) that /proc/<pid>/cgroup lists for it. */
export function procCgroupPathFor(h: Hierarchy, lines: ProcCgroupLine[]): string | undefined {
  if (h.version === 2) return lines.find((l) => l.id === 0 && l.controllers.length === 0)?.path;
  const key = [...h.options].sort().join(',');
  return lines.find((l) => l.id !== 0 && [...l.controllers].sort().join(',') === key)?.path;
}
