import type { OpName } from './protocol.js';
import type { Spec } from '../spec/types.js';

/**
 * Where a step sits in the sequence. The builder orders steps by phase (this list),
 * then by control registration order; each phase exists for a kernel reason:
 *  - prepare/after-clone/cleanup run in the parent (tsrun), the rest in tsrun-init.
 *  - join: the init moves itself into its cgroup v1 cgroups first, so nothing it runs
 *    escapes the limits (src/controls/cgroups/manager.ts says why the init, not tsrun).
 *  - early: unshare(CLONE_NEWCGROUP) must follow the parent's cgroup join, so the
 *    container's cgroup becomes the root of its cgroup namespace.
 *  - mounts: everything mounted under the new root before pivot_root — /proc included,
 *    because in a user namespace proc can only be mounted while the old proc is visible
 *    (design.md trap 3).
 *  - runtime-hooks, container-hooks: OCI prestart/createRuntime (run by tsrun while the init
 *    waits) and createContainer (forked by the init) hooks: "after the runtime environment has
 *    been created ... before pivot_root" (runtime-spec config.md); src/controls/hooks.ts.
 *  - pivot, post-pivot: read-only remounts and masked paths need the final tree.
 *  - system: hostname, sysctls, loopback, rlimits — still with full capabilities.
 *  - console: the pty comes from the container's own devpts (newinstance).
 *  - seccomp-early: the seccomp filter when no_new_privs is off: seccomp(2) then needs
 *    CAP_SYS_ADMIN, which the capability drop below removes; the filter must allow the rest.
 *  - user: bounding set dropped while CAP_SETPCAP is held, then setgroups/setresgid/setresuid
 *    (capabilities(7): keep-caps keeps the permitted set across the uid change).
 *  - caps: capset after the uid change, because setresuid clears the effective set.
 *  - nnp: no_new_privs before seccomp (seccomp(2): unprivileged filters need it).
 *  - wait-start: OCI create/start split.
 *  - landlock: landlock_restrict_self needs no_new_privs (or CAP_SYS_ADMIN), so after nnp;
 *    after wait-start, whose fifo is a host path no container rule could allow; before
 *    seccomp, so the filter need not allow the landlock calls.
 *  - seccomp: last, so the filter does not have to allow the runtime's own set-up calls.
 *  - start-hooks: OCI startContainer hooks, after start and before the command, so with the
 *    container's credentials and filter (runc runs them at the same point).
 *  - exec: the container's command.
 */
export const CHILD_PHASES = [
  'join',
  'early',
  'mounts',
  'runtime-hooks',
  'container-hooks',
  'pivot',
  'post-pivot',
  'system',
  'console',
  'seccomp-early',
  'user',
  'caps',
  'nnp',
  'wait-start',
  'landlock',
  'seccomp',
  'start-hooks',
  'exec',
] as const;
export type ChildPhase = (typeof CHILD_PHASES)[number];

/** create-hooks, poststart and poststop hold OCI hooks that src/runtime/hooks.ts runs at those moments. */
export const PARENT_PHASES = ['prepare', 'after-clone', 'create-hooks', 'poststart', 'cleanup', 'poststop'] as const;
export type ParentPhase = (typeof PARENT_PHASES)[number];

/** An operation the static init performs, encoded for native/init.c. */
export interface ChildOp {
  op: OpName;
  ints: bigint[];
  strs: string[];
  blob?: Uint8Array;
  /** the call as a learner would write it, flags by name */
  text: string;
}

/** An operation the parent performs itself (TypeScript, via the kernel module). */
export type ParentAction =
  | { action: 'mkdir'; path: string; mode: number }
  | { action: 'mkfifo'; path: string; mode: number }
  | { action: 'write-file'; path: string; content: string; mode: number }
  | { action: 'remove'; path: string }
  /** chown(2) (-1 keeps the id) and, when given, chmod(2) */
  | { action: 'chown'; path: string; uid: number; gid: number; mode?: number }
  | { action: 'clone'; flags: string[] }
  | {
      action: 'cgroup';
      /** executed by src/controls/cgroups/manager.ts runCgroupAction (see there for each verb) */
      verb: 'create' | 'enable' | 'join' | 'clone-into' | 'set' | 'oom-check' | 'kill' | 'remove';
      path: string;
      file?: string;
      value?: string;
      /** create: files copied from the parent into each new level (v1 cpuset starts empty) */
      inherit?: string[];
    }
  | { action: 'id-map'; file: 'uid_map' | 'gid_map' | 'setgroups'; content: string }
  | { action: 'send-mount-fd'; source: string; idmapUserns: boolean; recursive: boolean }
  /** src/network/store.ts ensureBridge: the network's bridge with its gateway address, up */
  | { action: 'network-bridge'; bridge: string; subnet: string; gateway: string; name: string; internal: boolean }
  /** src/network/cni.ts runCniAction: one CNI plugin call (CNI spec 1.0) */
  | {
      action: 'cni';
      command: 'ADD' | 'DEL';
      plugin: string;
      cniPath: string;
      containerId: string;
      ifname: string;
      config: Record<string, unknown>;
    }
  /** src/network/names.ts: the container's address and names in every member's /etc/hosts (join), or out of them (leave) */
  | { action: 'network-names'; command: 'join' | 'leave'; netDir: string; network: string; containerId: string; hostsFile?: string; names?: string[] }
  /** src/network/cni.ts runPortAction: bridge port isolation of the container's host-side veth */
  | { action: 'bridge-port'; containerId: string; isolated: boolean }
  | { action: 'go' }
  /** src/runtime/hooks.ts: an OCI hook run by tsrun in the runtime namespaces */
  | { action: 'hook'; kind: 'prestart' | 'createRuntime' | 'poststart' | 'poststop'; index: number; hook: import('../controls/hooks.js').Hook }
  /** src/controls/mac.ts ensureAppArmorProfile: load tsrun's built-in profile with apparmor_parser when the kernel lacks it */
  | { action: 'apparmor-load'; profile: string; policy: string }
  /** src/controls/mac.ts relabel: a volume's :z/:Z */
  | { action: 'selinux-relabel'; path: string; label: string };

interface StepMeta {
  /** the control this step serves, e.g. `namespaces`, `readonly-rootfs` */
  control: string;
  /** one line: why this step is here (man page, CVE, CIS control) */
  why: string;
}

export interface ChildStep extends ChildOp, StepMeta {
  where: 'child';
  phase: ChildPhase;
}

export type ParentStep = ParentAction &
  StepMeta & {
    where: 'parent';
    phase: ParentPhase;
    text: string;
  };

export type Step = ChildStep | ParentStep;

export interface Plan {
  id: string;
  spec: Spec;
  /** clone(2) flags (names) for the child */
  cloneFlags: string[];
  steps: Step[];
}

/** What a control module exposes; one module per control under src/controls/. */
export interface Control {
  id: string;
  title: string;
  /** workshop lab / CIS Docker Benchmark reference, e.g. "CIS 5.28" */
  ref?: string;
  /** throws SpecError/UsageError/UnsupportedError for input this control cannot honour */
  validate?(ctx: BuildContext): void;
  steps(ctx: BuildContext): Step[];
}

/** Facts about the host that planning depends on, detected once (or faked in tests). */
export interface HostInfo {
  /** capabilities tsrun itself holds (CapEff), as a bitmask */
  capEff: bigint;
  /** tsrun's bounding set (CapBnd): what an exec'd root can hold at most; absent = all */
  capBnd?: bigint;
  /** "v1" | "v2" | "hybrid", detected by src/controls/cgroups */
  cgroupMode?: 'v1' | 'v2' | 'hybrid';
  /** which hierarchy holds each controller (src/controls/cgroups/mode.ts hostLayout()) */
  cgroupLayout?: import('../controls/cgroups/mode.js').CgroupLayout;
  lsms: string[];
  /** where `lsms` was read (src/runtime/host.ts readLsms) */
  lsmSource?: string;
  ncpu: number;
}

export interface BuildContext {
  id: string;
  spec: Spec;
  /** host path of the directory that becomes `/` (the overlay's merged dir or the bundle's rootfs) */
  rootfs: string;
  /** overlay layers when the root is an image (lowest first); absent for bundles */
  overlay?: { lower: string[]; upper: string; work: string };
  /** per-container directory for generated files (hostname, hosts, resolv.conf) */
  containerDir: string;
  host: HostInfo;
  /** whether the parent relays a pty (process.terminal) */
  terminal: boolean;
  /** stop before exec until `start` (OCI create): the init waits on `startFifo(ctx)` */
  waitStart: boolean;
  /** absolute bundle directory (OCI bundles only): the `bundle` of the state hooks get */
  bundle?: string;
  /** run --network NAME: the user-defined network to attach to (src/network, resolved by the CLI) */
  network?: import('../network/types.js').NetworkAttachment;
  /** --add-host, --dns, --dns-search (src/controls/etc-files.ts) */
  etc?: { addHosts: string[]; dns: string[]; dnsSearch: string[] };
  /** --no-new-keyring (runc's flag): keep the caller's session keyring instead of a new one */
  noNewKeyring?: boolean;
  /** the state root (--root): its containers get their own default cgroup parent */
  stateRoot?: string;
}
