// The cgroups control: resource limits (CIS Docker Benchmark 5.11 memory, 5.12 CPU; the
// workshop's 5.28 PIDs limit), the container's own cgroup, its cgroup namespace and a
// read-only /sys/fs/cgroup that shows that cgroup as the root.
import { basename, join } from 'node:path';
import { UnsupportedError } from '../../errors.js';
import type { BuildContext, ChildPhase, ChildStep, Control, Step } from '../../plan/types.js';
import type { Mount, Spec } from '../../spec/types.js';
import { planCgroup, type CgroupTarget } from './manager.js';
import { hostLayout, type CgroupLayout } from './mode.js';
import { parseCpuList } from './units.js';
import { readCgroupFile } from './manager.js';

export { flags } from './flags.js';
export { CgroupManager, planCgroup, runCgroupAction, wasOomKilled, oomKillCount, resolveCgroupPath, cgroupTargets } from './manager.js';
export { detectLayout, hostLayout } from './mode.js';
export { mapResources } from './resources.js';

// mount(2) flags (linux/mount.h)
const MS_RDONLY = 1n;
const MS_NOSUID = 2n;
const MS_NODEV = 4n;
const MS_NOEXEC = 8n;
const MS_BIND = 4096n;
const MS_REC = 16384n;
const MS_RELATIME = 1n << 21n;
const CLONE_NEWCGROUP = 0x02000000n;
const SAFE = MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RELATIME;

const CONTROL = 'cgroups';

function layoutOf(ctx: BuildContext): CgroupLayout {
  return ctx.host.cgroupLayout ?? hostLayout();
}

/** OCI mounts of type cgroup/cgroup2 are this control's (the mounts control skips them). */
export function isCgroupMount(m: Mount): boolean {
  return m.type === 'cgroup' || m.type === 'cgroup2';
}

export function privateCgroupNamespace(spec: Spec): boolean {
  return spec.linux.namespaces.some((n) => n.type === 'cgroup' && !n.path);
}

function child(phase: ChildPhase, op: ChildStep['op'], ints: bigint[], strs: string[], text: string, why: string): ChildStep {
  return { where: 'child', phase, op, ints, strs, text, why, control: CONTROL };
}

function flagNames(flags: bigint): string {
  const names: [bigint, string][] = [[MS_RDONLY, 'MS_RDONLY'], [MS_NOSUID, 'MS_NOSUID'], [MS_NODEV, 'MS_NODEV'], [MS_NOEXEC, 'MS_NOEXEC'], [MS_BIND, 'MS_BIND'], [MS_REC, 'MS_REC'], [MS_RELATIME, 'MS_RELATIME']];
  return names.filter(([b]) => (flags & b) !== 0n).map(([, n]) => n).join('|') || '0';
}

function mountOp(source: string, target: string, fstype: string, data: string, flags: bigint, why: string): ChildStep {
  return child('mounts', 'MOUNT', [flags], [source, target, fstype, data], `mount("${source}", "${target}", "${fstype}", ${flagNames(flags)}, "${data}")`, why);
}

/**
 * The child steps that show the container its cgroup at `dest` (normally /sys/fs/cgroup),
 * read-only. With a private cgroup namespace a fresh cgroupfs mount shows the namespace root
 * (the container's cgroup) as `/` (cgroup_namespaces(7)); without one, the container's own
 * directories are bind-mounted so the host's tree stays out of sight.
 */
export function cgroupMountSteps(ctx: BuildContext, dest: string, targets: CgroupTarget[], layout: CgroupLayout): ChildStep[] {
  const target = join(ctx.rootfs, dest);
  const own = privateCgroupNamespace(ctx.spec);
  const why = own ? 'the container sees its own cgroup as the root, read-only (cgroup_namespaces(7))' : 'only the container\'s own cgroup is visible, read-only';
  const out: ChildStep[] = [];
  if (layout.mode === 'v2') {
    const t = targets.find((x) => x.hierarchy.version === 2)!;
    if (own) out.push(mountOp('cgroup2', target, 'cgroup2', '', SAFE | MS_RDONLY, why));
    else {
      out.push(mountOp(t.dir, target, '', '', MS_BIND | MS_REC, why));
      out.push(child('mounts', 'REMOUNT_RO', [0n], [target], `mount("", "${target}", NULL, MS_REMOUNT|MS_BIND|MS_RDONLY, NULL)`, 'cgroup limits must not be writable from inside (CIS 5.x)'));
    }
    return out;
  }
  // v1 / hybrid: a tmpfs holding one mount per hierarchy, like the host's /sys/fs/cgroup
  out.push(mountOp('tmpfs', target, 'tmpfs', 'mode=755', SAFE, 'a directory per hierarchy, as on the host'));
  for (const t of targets) {
    const name = basename(t.hierarchy.mountPoint);
    const sub = join(target, name);
    out.push(child('mounts', 'MKDIR', [0o755n], [sub], `mkdir("${sub}", 0755)`, 'mount point for one hierarchy'));
    if (own) {
      const fstype = t.hierarchy.version === 2 ? 'cgroup2' : 'cgroup';
      out.push(mountOp(fstype, sub, fstype, t.hierarchy.options.join(','), SAFE | MS_RDONLY, why));
    } else {
      out.push(mountOp(t.dir, sub, '', '', MS_BIND | MS_REC, why));
      out.push(child('mounts', 'REMOUNT_RO', [0n], [sub], `mount("", "${sub}", NULL, MS_REMOUNT|MS_BIND|MS_RDONLY, NULL)`, 'cgroup limits must not be writable from inside'));
    }
    // co-mounted controllers (cpu,cpuacct) get the per-controller names hosts provide
    if (name.includes(',')) {
      for (const c of t.hierarchy.controllers) {
        if (c !== name) out.push(child('mounts', 'SYMLINK', [], [name, join(target, c)], `symlink("${name}", "${join(target, c)}")`, 'per-controller name for a co-mounted hierarchy'));
      }
    }
  }
  out.push(child('mounts', 'REMOUNT_RO', [0n], [target], `mount("", "${target}", NULL, MS_REMOUNT|MS_BIND|MS_RDONLY, NULL)`, '/sys/fs/cgroup is read-only inside (CIS 5.x: no writable cgroupfs)'));
  return out;
}

/** Checks against the host that need no writes: CPUs and memory nodes present. */
function checkCpusetAgainstHost(ctx: BuildContext, layout: CgroupLayout): void {
  const cpu = ctx.spec.linux.resources?.cpu;
  const h = layout.controllers['cpuset'];
  if (!cpu || !h) return;
  for (const [key, file, flag] of [['cpus', 'cpuset.effective_cpus', '--cpuset-cpus'], ['mems', 'cpuset.effective_mems', '--cpuset-mems']] as const) {
    const want = cpu[key];
    if (!want) continue;
    const have = readCgroupFile(join(h.mountPoint, file)) ?? readCgroupFile(join(h.mountPoint, `cpuset.${key}`));
    if (!have?.trim()) continue;
    const avail = new Set(parseCpuList(have.trim()));
    const absent = parseCpuList(want).filter((c) => !avail.has(c));
    if (absent.length) {
      throw new UnsupportedError(`${flag} (linux.resources.cpu.${key}): ${absent.join(',')} not available on this host (available: ${have.trim()})`);
    }
  }
}

export const control: Control = {
  id: CONTROL,
  title: 'cgroups: resource limits, own cgroup, cgroup namespace',
  ref: 'CIS Docker 5.11 (memory), 5.12 (CPU); workshop 5.28 (PIDs limit)',
  validate(ctx) {
    const layout = layoutOf(ctx);
    planCgroup(ctx.spec, ctx.id, layout); // throws for values the host cannot honour
    checkCpusetAgainstHost(ctx, layout);
  },
  steps(ctx): Step[] {
    const layout = layoutOf(ctx);
    const plan = planCgroup(ctx.spec, ctx.id, layout);
    const steps: Step[] = [...plan.steps];
    if (privateCgroupNamespace(ctx.spec)) {
      steps.push(child('early', 'UNSHARE', [CLONE_NEWCGROUP], [], 'unshare(CLONE_NEWCGROUP)', 'after the parent joined the cgroup, so that cgroup becomes the namespace root (cgroup_namespaces(7))'));
    }
    const mounts = ctx.spec.mounts ?? [];
    const explicit = mounts.filter(isCgroupMount);
    const dests = explicit.length ? explicit.map((m) => m.destination) : mounts.some((m) => m.destination === '/sys' && m.type === 'sysfs') && !mounts.some((m) => m.destination === '/sys/fs/cgroup') ? ['/sys/fs/cgroup'] : [];
    for (const d of dests) steps.push(...cgroupMountSteps(ctx, d, plan.targets, layout));
    return steps;
  },
};
