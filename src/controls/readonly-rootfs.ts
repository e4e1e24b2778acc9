import * as op from '../plan/ops.js';
import { child } from '../plan/step.js';
import type { Control } from '../plan/types.js';

// docker run --read-only / OCI root.readonly: the root mount becomes read-only after every
// other mount is in place (their targets had to be created first), so a compromised
// process cannot plant binaries or change configuration; writable paths are opt-in
// (--tmpfs, volumes).
export const control: Control = {
  id: 'readonly-rootfs',
  title: 'Read-only root filesystem',
  ref: 'CIS 5.12: mount the container\'s root filesystem as read only',
  steps(ctx) {
    if (!ctx.spec.root.readonly) return [];
    return [child('post-pivot', 'readonly-rootfs', 'writes to / fail with EROFS; only --tmpfs and volumes stay writable', op.remountReadonly('/'))];
  },
};
