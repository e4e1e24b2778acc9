import { CONTROLS } from '../controls/index.js';
import { CHILD_PHASES, PARENT_PHASES } from './types.js';
import type { BuildContext, ChildStep, Control, Plan, Step } from './types.js';
import { cloneFlags, hasMountNamespace } from '../controls/namespaces.js';
import { SpecError } from '../errors.js';

const HOST_MOUNT_OPS = new Set(['MOUNT', 'UMOUNT', 'MOUNT_FD', 'REMOUNT_RO', 'MASK_PATH', 'PIVOT_ROOT', 'MKNOD', 'CONSOLE']);

// the parent's hook phases sit where they run: create-hooks between the init's HOOK_SYNC
// (runtime-hooks) and its createContainer hooks, poststart after the exec, poststop last
const ORDER: string[] = [...PARENT_PHASES.slice(0, 2), ...CHILD_PHASES, 'poststart', 'cleanup', 'poststop'];
ORDER.splice(ORDER.indexOf('container-hooks'), 0, 'create-hooks');
const PHASE_RANK = new Map<string, number>(ORDER.map((p, i) => [p, i]));

/**
 * spec → plan: validate with every control, collect their steps and order them by phase
 * (see the phase list in ./types.ts for why each phase is where it is). Pure: no kernel,
 * no filesystem writes, so it runs in unit tests and for --dry-run.
 */
export function buildPlan(ctx: BuildContext, controls: readonly Control[] = CONTROLS): Plan {
  for (const c of controls) c.validate?.(ctx);
  const steps: Step[] = controls.flatMap((c) => c.steps(ctx));
  if (!hasMountNamespace(ctx)) {
    // the backstop of the namespaces control's refusals: no step may change the host's mount table
    const m = steps.find((s) => s.where === 'child' && HOST_MOUNT_OPS.has(s.op));
    if (m) throw new SpecError('linux.namespaces', `${m.control} needs a mount namespace (${m.text}); add {"type": "mount"}`);
  }
  const ranked = steps.map((s, i) => ({ s, i, r: PHASE_RANK.get(s.phase)! }));
  ranked.sort((a, b) => a.r - b.r || a.i - b.i);
  return { id: ctx.id, spec: ctx.spec, cloneFlags: cloneFlags(ctx).map((f) => `CLONE_${f}`), steps: ranked.map((x) => x.s) };
}

export function childSteps(plan: Plan): ChildStep[] {
  return plan.steps.filter((s): s is ChildStep => s.where === 'child');
}
