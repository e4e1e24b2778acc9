import type { Plan } from './types.js';

/** The plan as text: one line per kernel operation, then its control and reason. */
export function renderPlan(plan: Plan, abbrev: Record<string, string> = {}): string {
  // Long host paths repeat on most lines; name them once at the top instead.
  const names = Object.entries(abbrev).sort((a, b) => b[1].length - a[1].length);
  const short = (t: string) => names.reduce((acc, [name, path]) => acc.split(path).join(name), t);
  const lines: string[] = [`plan for container ${plan.id}: ${plan.steps.length} operations`];
  for (const [name, path] of Object.entries(abbrev)) lines.push(`  ${name} = ${path}`);
  let phase = '';
  let n = 0;
  for (const s of plan.steps) {
    if (s.phase !== phase) {
      phase = s.phase;
      lines.push('', `[${s.where === 'parent' ? 'tsrun' : 'tsrun-init'}: ${phase}]`);
    }
    n++;
    lines.push(`${String(n).padStart(3)}. ${short(s.text)}`, `       ${s.control}: ${s.why}`);
  }
  return lines.join('\n') + '\n';
}

/** The plan for machines: the same steps, binary payloads summarised. */
export function planJson(plan: Plan): unknown {
  return {
    id: plan.id,
    cloneFlags: plan.cloneFlags,
    steps: plan.steps.map((s) => {
      if (s.where === 'parent') {
        const { where, phase, control, why, text, ...action } = s;
        return { where, phase, control, why, text, ...action };
      }
      return {
        where: s.where,
        phase: s.phase,
        control: s.control,
        why: s.why,
        op: s.op,
        text: s.text,
        ints: s.ints.map((v) => v.toString()),
        strs: s.strs,
        ...(s.blob ? { blobBytes: s.blob.length } : {}),
      };
    }),
  };
}
