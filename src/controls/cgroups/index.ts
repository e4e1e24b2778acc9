// The cgroups control: resource limits (CIS Docker Benchmark v1.2.0 5.10 memory, 5.11 CPU; the
// workshop's 5.28 PIDs limit), the container's own cgroup, its cgroup namespace and a
// read-only /sys/fs/cgroup that shows that cgroup as the root.
import { basename, join } from 'node:path';
import { UnsupportedError } from '../../errors.js';
import * as op from '../../plan/ops.js';
import type { MountFlag } from '../../plan/ops.js';
import { child } from '../../plan/step.js';
import type { BuildContext, ChildOp, ChildStep, Control, Step } from '../../plan/types.js';
import type { Mount, Spec } from '../../spec/types.js';
import { defaultCgroupParent, planCgroup, readCgroupFile, type CgroupTarget } from './manager.js';
import { hostLayout, type CgroupLayout } from './mode.js';
import { parseCpuList } from './units.js';

export { flags } from './flags.js';
export { CgroupManager, defaultCgroupParent, planCgroup, runCgroupAction, wasOomKilled, oomKillCount, oomKilledFromSteps, resolveCgroupPath, cgroupTargets, setFrozen, joinTargets, targetsFromSteps } from './manager.js';
export { detectLayout, hostLayout } from './mode.js';
export { mapResources } from './resources.js';

const CONTROL = 'cgroups';
const SAFE: MountFlag[] = ['NOSUID', 'NODEV', 'NOEXEC', 'RELATIME'];

/**
 * The host's layout, or undefined on a host with no cgroup filesystem at all (some build
 * sandboxes): a container without limits then runs without a cgroup of its own, but any
 * limit is refused rather than silently dropped.
 */
function layoutOf(ctx: BuildContext): CgroupLayout | undefined {
  if (ctx.host.cgroupLayout) return ctx.host.cgroupLayout;
  try {
    return hostLayout();
  } catch (e) {
    const r = ctx.spec.linux.resources;
    const asked = r && Object.values(r).some((v) => v !== undefined && !(Array.isArray(v) && v.length === 0));
    if (asked || ctx.spec.linux.cgroupsPath) throw new UnsupportedError(`linux.resources: ${(e as Error).message}; no limit can be applied`);
    return undefined;
  }
}

/** OCI mounts of type cgroup/cgroup2 are this control's (the mounts control skips them). */
export function isCgroupMount(m: Mount): boolean {
  return m.type === 'cgroup' || m.type === 'cgroup2';
}

export function privateCgroupNamespace(spec: Spec): boolean {
  return spec.linux.namespaces.some((n) => n.type === 'cgroup' && !n.path);
}

const mountStep = (why: string, o: ChildOp): ChildStep => child('mounts', CONTROL, why, o);

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
  const ro = 'cgroup limits must not be writable from inside (the container could lift its own limits)';
  if (layout.mode === 'v2') {
    const t = targets.find((x) => x.hierarchy.version === 2)!;
    if (own) out.push(mountStep(why, op.mount('cgroup2', target, 'cgroup2', [...SAFE, 'RDONLY'])));
    else {
      out.push(mountStep(why, op.mount(t.dir, target, '', ['BIND', 'REC'])));
      out.push(mountStep(ro, op.remountReadonly(target)));
    }
    return out;
  }
  // v1 / hybrid: a tmpfs holding one mount per hierarchy, like the host's /sys/fs/cgroup
  out.push(mountStep('a directory per hierarchy, as on the host', op.mount('tmpfs', target, 'tmpfs', SAFE, 'mode=755')));
  for (const t of targets) {
    const name = basename(t.hierarchy.mountPoint);
    const sub = join(target, name);
    out.push(mountStep('mount point for one hierarchy', op.mkdir(sub)));
    if (own) {
      const fstype = t.hierarchy.version === 2 ? 'cgroup2' : 'cgroup';
      out.push(mountStep(why, op.mount(fstype, sub, fstype, [...SAFE, 'RDONLY'], t.hierarchy.options.join(','))));
    } else {
      out.push(mountStep(why, op.mount(t.dir, sub, '', ['BIND', 'REC'])));
      out.push(mountStep(ro, op.remountReadonly(sub)));
    }
    // co-mounted controllers (cpu,cpuacct) get the per-controller names hosts provide
    if (name.includes(',')) {
      for (const c of t.hierarchy.controllers) if (c !== name) out.push(mountStep('per-controller name for a co-mounted hierarchy', op.symlink(name, join(target, c))));
    }
  }
  // a plain remount of the tmpfs we created (not a bind): no locked flags to keep
  out.push(mountStep(ro, op.mount('', target, '', ['REMOUNT', 'RDONLY', 'NOSUID', 'NODEV', 'NOEXEC'])));
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
  ref: 'CIS 5.10 (memory), 5.11 (CPU shares), 5.28 (PIDs limit); workshop lab 4',
  validate(ctx) {
    const layout = layoutOf(ctx);
    if (!layout) return;
    planCgroup(ctx.spec, ctx.id, layout, { defaultParent: defaultCgroupParent(ctx.stateRoot) }); // throws for values the host cannot honour
    checkCpusetAgainstHost(ctx, layout);
  },
  steps(ctx): Step[] {
    const layout = layoutOf(ctx);
    if (!layout) return [];
    const plan = planCgroup(ctx.spec, ctx.id, layout, { defaultParent: defaultCgroupParent(ctx.stateRoot) });
    const steps: Step[] = [...plan.steps, ...plan.childSteps];
    // unshare(CLONE_NEWCGROUP) in phase 'early' comes from the namespaces control, after
    // the join below, so this cgroup is the namespace's root
    const mounts = ctx.spec.mounts ?? [];
    const explicit = mounts.filter(isCgroupMount);
    const dests = explicit.length ? explicit.map((m) => m.destination) : mounts.some((m) => m.destination === '/sys' && m.type === 'sysfs') && !mounts.some((m) => m.destination === '/sys/fs/cgroup') ? ['/sys/fs/cgroup'] : [];
    for (const d of dests) steps.push(...cgroupMountSteps(ctx, d, plan.targets, layout));
    return steps;
  },
};
