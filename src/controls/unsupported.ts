// Settings of the OCI runtime spec that tsrun has no mechanism for. A runtime that skips
// them starts a container weaker than its config.json says (no AppArmor profile, no SELinux
// label, no net_cls class) while the engine and the user believe otherwise, so each one is
// refused, naming the field and why. An empty value means "none" in the spec and is fine.
import { UnsupportedError } from '../errors.js';
import type { BuildContext, Control } from '../plan/types.js';
import { quoteValue } from '../spec/quote.js';

function lsmState(ctx: BuildContext, lsm: string, name: string): string {
  const { lsms } = ctx.host;
  if (lsms.includes(lsm)) return `tsrun has no ${name} support`;
  // an empty list: securityfs is not mounted, so which LSMs run is unknown from here
  if (!lsms.length) return `tsrun has no ${name} support (and cannot tell whether ${name} is active: /sys/kernel/security/lsm is not readable)`;
  return `${name} is not active on this kernel (LSMs: ${lsms.join(',')}), and tsrun has no ${name} support`;
}

interface Refusal {
  field: string;
  value: (ctx: BuildContext) => unknown;
  why: (ctx: BuildContext) => string;
}

const present = (v: unknown) => v !== undefined && v !== null && v !== '';

const REFUSED: Refusal[] = [
  {
    field: 'process.apparmorProfile',
    value: (c) => c.spec.process.apparmorProfile,
    why: (c) => `${lsmState(c, 'apparmor', 'AppArmor')}: the container would run unconfined; remove the field to run without a profile`,
  },
  {
    field: 'process.selinuxLabel',
    value: (c) => c.spec.process.selinuxLabel,
    why: (c) => `${lsmState(c, 'selinux', 'SELinux')}: the process would keep the caller's label; remove the field to run unlabelled`,
  },
  {
    field: 'linux.mountLabel',
    value: (c) => c.spec.linux.mountLabel,
    why: (c) => `${lsmState(c, 'selinux', 'SELinux')}: mounts would not get this context; remove the field`,
  },
  {
    field: 'linux.resources.network',
    value: (c) => c.spec.linux.resources?.network,
    why: () => 'net_cls/net_prio (classID, priorities) are cgroup v1 controllers tsrun does not drive (cgroup v2 has none); classify traffic with the network instead',
  },
  {
    field: 'linux.resources.rdma',
    value: (c) => c.spec.linux.resources?.rdma,
    why: () => 'the rdma cgroup controller is not driven by tsrun',
  },
  {
    field: 'linux.intelRdt',
    value: (c) => c.spec.linux.intelRdt,
    why: () => 'Intel RDT (resctrl) is not supported by tsrun',
  },
  {
    field: 'linux.personality',
    // LINUX with no flags is what every process has already
    value: (c) => (c.spec.linux.personality?.domain === 'LINUX' && !c.spec.linux.personality.flags?.length ? undefined : c.spec.linux.personality),
    why: () => 'personality(2) is not set by tsrun (only the default LINUX domain without flags is accepted)',
  },
];

export const control: Control = {
  id: 'unsupported',
  title: 'Settings tsrun cannot apply: refused, never ignored',
  validate(ctx: BuildContext): void {
    for (const r of REFUSED) {
      const v = r.value(ctx);
      if (present(v)) throw new UnsupportedError(`${r.field}: ${quoteValue(v)}: ${r.why(ctx)}`);
    }
  },
  steps() {
    return [];
  },
};
