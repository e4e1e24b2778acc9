import { UnsupportedError, SpecError } from '../errors.js';
import * as op from '../plan/ops.js';
import type { CloneFlag } from '../plan/ops.js';
import { child, parent } from '../plan/step.js';
import type { BuildContext, Control, Step } from '../plan/types.js';
import type { NamespaceType } from '../spec/types.js';
import { quoteValue } from '../spec/quote.js';

// namespaces(7): each type isolates one view of the system. They are created by clone(2)
// in one call, so the container's first instruction already runs inside all of them —
// except the cgroup namespace, created later (see phase 'early' in plan/types.ts).
const FLAG: Record<NamespaceType, CloneFlag | undefined> = {
  pid: 'NEWPID',
  network: 'NEWNET',
  mount: 'NEWNS',
  ipc: 'NEWIPC',
  uts: 'NEWUTS',
  user: 'NEWUSER',
  cgroup: 'NEWCGROUP',
  time: undefined,
};

const WHY: Record<NamespaceType, string> = {
  pid: 'own process tree: the command is PID 1 and cannot see or signal host processes',
  network: 'own network stack: only a loopback device unless tsrun adds one',
  mount: 'own mount table: the pivot_root and every mount below stay inside the container',
  ipc: 'own System V IPC and POSIX message queues',
  uts: 'own hostname and domain name',
  user: 'own uid/gid mapping: root inside is an unprivileged uid outside',
  cgroup: 'own cgroup root: the container sees its cgroup as /',
  time: 'own boot and monotonic clocks',
};

/**
 * Namespaces a container may join by path (linux.namespaces[].path) instead of creating
 * them: engines create the network namespace themselves (podman's netavark under
 * /run/netns, a Kubernetes pod sandbox shares net/ipc/uts/pid, a user-namespaced pod its
 * user namespace). A joined PID namespace applies to children only (pid_namespaces(7)): the
 * init forks right after it (OP_FORK, as exec does) and the child, born in that namespace,
 * runs the rest of the plan.
 *
 * A joined user namespace changes who owns what the init creates: namespaces made by the
 * clone(2) from tsrun belong to the host's user namespace, where the init holds no
 * capability once it has joined (mounting /proc for a PID namespace, sysfs for a network
 * namespace, sethostname all check the owner: user_namespaces(7)). So, as runc's nsexec does
 * (join_namespaces, then unshare), the clone makes no namespace; the init joins the other
 * namespaces first (as host root it may enter any), then the user namespace (setns gives it
 * every capability there; it then becomes uid/gid 0 of it), then unshares the new ones, which
 * that user namespace now owns, and forks if one is a PID namespace.
 *
 * A joined mount namespace gets the same rootfs set-up as a new one, as runc does
 * (prepareRoot, mounts, pivot_root whenever the type is listed, path or not): root.path and
 * mount sources resolve in that namespace, and the mounts and the pivot_root happen in its
 * table (pivot_root(2) moves every process there whose root was the old root).
 */
const JOINABLE = new Set<NamespaceType>(['network', 'ipc', 'uts', 'cgroup', 'pid', 'mount', 'user']);

/** The path of a joined user namespace, if the spec joins one. */
export function joinedUserNs(spec: { linux: { namespaces: { type: NamespaceType; path?: string }[] } }): string | undefined {
  return spec.linux.namespaces.find((n) => n.type === 'user' && n.path !== undefined)?.path;
}

/** True when the container gets a mount namespace (a new one or a joined one: the rootfs is set up in it). */
export function hasMountNamespace(ctx: BuildContext): boolean {
  return ctx.spec.linux.namespaces.some((n) => n.type === 'mount');
}

/**
 * Without a mount namespace (the spec may leave it out: runc allows it) the container shares
 * the host's mount table: tsrun then only chroots into root.path (as runc does) and makes no
 * mount at all. Whatever would need one is refused, naming the field: runc would mount the
 * spec's mounts into the host's table and leave them there after the container ends; for
 * masked and read-only paths runc refuses too ("unable to restrict sys entries without a
 * private MNT namespace").
 */
function refuseHostMounts(ctx: BuildContext): void {
  const s = ctx.spec;
  const why = 'without a mount namespace it would be made in the host\'s mount table; add {"type": "mount"} to linux.namespaces';
  if (s.mounts?.length) throw new SpecError('mounts[0]', `${JSON.stringify(s.mounts[0]!.destination)}: ${why}`);
  if (s.linux.maskedPaths?.length) throw new SpecError('linux.maskedPaths', `masking a path is a mount: ${why}`);
  if (s.linux.readonlyPaths?.length) throw new SpecError('linux.readonlyPaths', `a read-only path is a mount: ${why}`);
  if (s.root.readonly) throw new SpecError('root.readonly', `a read-only root is a remount: ${why}`);
  if (s.linux.rootfsPropagation) throw new SpecError('linux.rootfsPropagation', `propagation is set on a mount: ${why}`);
  if (s.linux.devices?.length) throw new SpecError('linux.devices', 'device nodes need a mount namespace: without one they would be made in the bundle\'s root on the host (or bound in the host\'s mount table) and outlive the container; add {"type": "mount"} to linux.namespaces');
  if (s.process?.terminal) throw new SpecError('process.terminal', `the pty is bound onto /dev/console: ${why}`);
}

export function hasNamespace(ctx: BuildContext, type: NamespaceType): boolean {
  return ctx.spec.linux.namespaces.some((n) => n.type === type && !n.path);
}

/** Flags of the namespaces the spec asks tsrun to create (cgroup excepted: unshared later). */
function newFlags(ctx: BuildContext): CloneFlag[] {
  const flags: CloneFlag[] = [];
  for (const ns of ctx.spec.linux.namespaces) {
    const f = FLAG[ns.type];
    if (f && !ns.path && ns.type !== 'cgroup') flags.push(f);
  }
  return flags;
}

/** clone(2) flags: none when a user namespace is joined (the init unshares them once it is in it). */
export function cloneFlags(ctx: BuildContext): CloneFlag[] {
  return joinedUserNs(ctx.spec) === undefined ? newFlags(ctx) : [];
}

export const control: Control = {
  id: 'namespaces',
  title: 'Namespaces (PID, mount, UTS, IPC, network, user, cgroup)',
  ref: 'workshop lab 3; CIS 5.9 (host network), 5.15 (host PID), 5.16 (host IPC), 5.20 (host UTS)',
  validate(ctx) {
    const seen = new Set<string>();
    ctx.spec.linux.namespaces.forEach((ns, i) => {
      const field = `linux.namespaces[${i}]`;
      if (!(ns.type in FLAG)) throw new SpecError(`${field}.type`, `unknown namespace type ${quoteValue(ns.type)}`);
      if (seen.has(ns.type)) throw new SpecError(`${field}.type`, `namespace ${ns.type} listed twice`);
      seen.add(ns.type);
      if (ns.type === 'time') throw new UnsupportedError(`${field}: time namespaces are not supported by tsrun yet`);
      if (ns.path !== undefined) {
        if (!JOINABLE.has(ns.type)) throw new UnsupportedError(`${field}.path: joining an existing ${ns.type} namespace (${ns.path}) is not supported`);
        if (!ns.path.startsWith('/')) throw new SpecError(`${field}.path`, `${quoteValue(ns.path)} must be an absolute path`);
      }
    });
    if (!seen.has('mount')) refuseHostMounts(ctx);
  },
  steps(ctx) {
    const steps: Step[] = [];
    const flags = cloneFlags(ctx);
    steps.push(
      parent(
        'after-clone',
        'namespaces',
        flags.length
          ? flags.map((f) => `CLONE_${f}`).join(', ') + ': ' + flags.map((f) => WHY[typeOfFlag(f)]).join('; ')
          : joinedUserNs(ctx.spec) !== undefined
            ? 'no namespace at clone: a user namespace is joined by path, so the init unshares the new ones after joining it (they would belong to the host\'s user namespace otherwise)'
            : 'no namespace of its own: the spec lists none to create',
        { action: 'clone', flags },
        // native/spawn.h: without a user namespace the child shares tsrun's memory until it
        // execs (vfork-like, as posix_spawn): no copy of Node's page tables to make and undo
        // (x86_64 only: the child's stack switch is a few lines of assembly there)
        `clone3(${[...flags.map((f) => `CLONE_${f}`), ...(flags.includes('NEWUSER') || process.arch !== 'x64' ? [] : ['CLONE_VM', 'CLONE_VFORK'])].join('|')}, exit_signal=SIGCHLD) → execveat(sealed memfd "tsrun-init") with the plan on fd 4`,
      ),
    );
    // The init opens each path before its first setns (native/init.c pre-pass), in the
    // copy of the host's mount table it was cloned with, so /run/netns/NAME still resolves.
    // Order as runc's nsexec (join_namespaces): every other namespace first, while the init
    // is host root and may enter any; the user namespace last, then the new namespaces.
    const joined = ctx.spec.linux.namespaces.map((n, i) => ({ ...n, i })).filter((n) => n.path !== undefined && FLAG[n.type]);
    const order = (t: NamespaceType) => (t === 'user' ? 2 : t === 'pid' ? 1 : 0);
    for (const ns of [...joined].sort((a, b) => order(a.type) - order(b.type))) {
      const why =
        ns.type === 'pid'
          ? 'the existing pid namespace, for the children of this process only (pid_namespaces(7)): see the fork'
          : ns.type === 'user'
            ? 'the existing user namespace, last: setns(2) gives every capability in it; then uid and gid 0 of it (as runc), and setgroups noted if that namespace denies it'
            : `join the existing ${ns.type} namespace the engine prepared (${WHY[ns.type]})`;
      // the field leads the text, so a refusal (EINVAL: not a namespace of that type) names it
      const o = op.setns(ns.path!, FLAG[ns.type]!);
      steps.push(child('early', 'namespaces', why, { ...o, text: `linux.namespaces[${ns.i}].path: ${o.text}` }));
    }
    const userPath = joinedUserNs(ctx.spec);
    const later = userPath === undefined ? [] : newFlags(ctx);
    if (later.length) {
      steps.push(
        child(
          'early',
          'namespaces',
          `new namespaces owned by the joined user namespace (made by clone they would belong to the host's, where this process has no capability): ${later.map((f) => WHY[typeOfFlag(f)]).join('; ')}`,
          op.unshare(later),
        ),
      );
    }
    const pidJoined = joined.some((n) => n.type === 'pid');
    if (pidJoined || later.includes('NEWPID')) {
      steps.push(
        child(
          'early',
          'namespaces',
          `${pidJoined ? 'setns(CLONE_NEWPID)' : 'unshare(CLONE_NEWPID)'} applies to children only: the container is born in the ${pidJoined ? 'joined' : 'new'} PID namespace; this process reports its pid and exits`,
          op.fork(),
        ),
      );
    }
    if (hasNamespace(ctx, 'cgroup')) {
      steps.push(child('early', 'namespaces', WHY.cgroup + ' (unshared after tsrun placed this process in its cgroup)', op.unshare(['NEWCGROUP'])));
    }
    return steps;
  },
};

function typeOfFlag(f: CloneFlag): NamespaceType {
  return (Object.keys(FLAG) as NamespaceType[]).find((t) => FLAG[t] === f)!;
}
