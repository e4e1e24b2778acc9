// The session keyring (keyrings(7)): keys are not namespaced, so a container that shares
// its caller's session keyring can read and add keys there (with seccomp off or a profile
// that allows keyctl(2) — docker's default profile blocks it for this very reason). As runc
// does, each container joins a new session keyring named after it before its command runs;
// `--no-new-keyring` (runc's flag) keeps the caller's.
import * as op from '../plan/ops.js';
import { child } from '../plan/step.js';
import type { Control } from '../plan/types.js';

export const control: Control = {
  id: 'keyring',
  title: 'A session keyring of its own',
  ref: 'runc --no-new-keyring; keyrings(7) (keys are not namespaced)',
  steps(ctx) {
    if (ctx.noNewKeyring) return [];
    return [child('system', 'keyring', "keys are not namespaced: the caller's session keyring (and its keys) stays out of reach", op.joinKeyring(ctx.id))];
  },
};
