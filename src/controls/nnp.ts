// no_new_privs (prctl(2) PR_SET_NO_NEW_PRIVS; CIS 5.25, workshop control 2.17): once set,
// execve never grants more privileges than the caller had — setuid/setgid bits and file
// capabilities are ignored — and the flag is inherited by every child and cannot be unset.
// So a setuid-root binary in the image (or one a process plants) cannot turn a non-root
// container user into root.
import type { BuildContext, ChildStep, Control, Step } from '../plan/types.js';
import type { FlagDef } from '../spec/flag-types.js';
import type { Spec } from '../spec/types.js';
import { UsageError } from '../errors.js';

/**
 * `--security-opt no-new-privileges[=true|false]` (docker also accepted the old
 * `no-new-privileges:true` form; the CLI routes both here with the part after the name).
 */
export function applySecurityOptNnp(spec: Spec, value?: string): void {
  const v = (value ?? '').trim().toLowerCase();
  if (v === '' || v === 'true') spec.process.noNewPrivileges = true;
  else if (v === 'false') spec.process.noNewPrivileges = false;
  else throw new UsageError(`--security-opt no-new-privileges: expected true or false, got "${value}"`);
}

// --security-opt itself is shared with seccomp and labels: the CLI owns that row and
// calls applySecurityOptNnp for the no-new-privileges forms, so there is no row here.
export const flags: FlagDef[] = [];

export const control: Control = {
  id: 'nnp',
  title: 'no_new_privs: execve cannot gain privileges (setuid, file capabilities)',
  ref: 'CIS 5.25 (restrict containers from acquiring additional privileges), workshop 2.17',
  steps(ctx: BuildContext): Step[] {
    if (!ctx.spec.process.noNewPrivileges) return [];
    const step: ChildStep = {
      where: 'child',
      phase: 'nnp',
      op: 'NO_NEW_PRIVS',
      ints: [],
      strs: [],
      text: 'prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)',
      why: 'setuid bits and file caps are ignored by every later execve (CIS 5.25); set before seccomp, which needs it without CAP_SYS_ADMIN',
      control: 'nnp',
    };
    return [step];
  },
};
