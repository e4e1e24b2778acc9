// Settings of the OCI runtime spec that tsrun has no mechanism for. A runtime that skips
// them starts a container weaker than its config.json says (no net_cls class, no RDT) while
// the engine and the user believe otherwise, so each one is refused, naming the field and
// why. An empty value means "none" in the spec and is fine. AppArmor and SELinux fields are
// the MAC control's (src/controls/mac.ts): applied where the LSM is active, refused elsewhere.
import { UnsupportedError } from '../errors.js';
import type { BuildContext, Control } from '../plan/types.js';
import { quoteValue } from '../spec/quote.js';

interface Refusal {
  field: string;
  value: (ctx: BuildContext) => unknown;
  why: (ctx: BuildContext) => string;
}

const present = (v: unknown) => v !== undefined && v !== null && v !== '';

const REFUSED: Refusal[] = [
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
