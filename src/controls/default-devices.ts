import * as op from '../plan/ops.js';
import { child } from '../plan/step.js';
import type { Control, Step } from '../plan/types.js';
import { under } from './mounts.js';
import { hasMountNamespace } from './namespaces.js';

// The devices every container gets (OCI runtime spec, "Default Devices"): each one is the
// host's node bound onto an empty file in the container's tmpfs /dev. Binding rather than
// mknod works the same inside a user namespace, where mknod(2) is not permitted.
export const DEFAULT_DEVICES = ['null', 'zero', 'full', 'random', 'urandom', 'tty'] as const;

const LINKS: [string, string][] = [
  ['/proc/self/fd', '/dev/fd'],
  ['/proc/self/fd/0', '/dev/stdin'],
  ['/proc/self/fd/1', '/dev/stdout'],
  ['/proc/self/fd/2', '/dev/stderr'],
  ['pts/ptmx', '/dev/ptmx'],
];

export const control: Control = {
  id: 'default-devices',
  title: 'Default devices in a private /dev',
  ref: 'CIS 5.17 (host devices not exposed)',
  steps(ctx) {
    const steps: Step[] = [];
    // without a mount namespace there is no /dev tmpfs of the container's own: the rootfs's
    // /dev is used as it is (binding host nodes would add mounts to the host's table)
    if (!hasMountNamespace(ctx)) return steps;
    for (const d of DEFAULT_DEVICES) {
      const target = under(ctx, `/dev/${d}`);
      steps.push(child('mounts', 'default-devices', `/dev/${d}: one of the six default devices`, op.mkfile(target, 0o666)));
      steps.push(child('mounts', 'default-devices', `the host's /dev/${d} node, bound (no other host device is reachable)`, op.mount(`/dev/${d}`, target, '', ['BIND'])));
    }
    for (const [target, link] of LINKS) {
      steps.push(child('mounts', 'default-devices', 'standard /dev link', op.symlink(target, under(ctx, link))));
    }
    if (ctx.terminal) {
      steps.push(child('mounts', 'default-devices', "bind target for the container's pty", op.mkfile(under(ctx, '/dev/console'), 0o600)));
    }
    return steps;
  },
};
