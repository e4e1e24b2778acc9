import type { ChildOp, ChildPhase, ChildStep, ParentAction, ParentPhase, ParentStep } from './types.js';

/** Tag an init operation with its phase, control and reason. */
export function child(phase: ChildPhase, control: string, why: string, op: ChildOp): ChildStep {
  return { where: 'child', phase, control, why, ...op };
}

/** Tag a parent-side action with its phase, control and reason. */
export function parent(phase: ParentPhase, control: string, why: string, action: ParentAction, text: string): ParentStep {
  return { where: 'parent', phase, control, why, text, ...action } as ParentStep;
}
