import { withMountLabel } from './mac.js';
import { SpecError } from '../errors.js';
import * as op from '../plan/ops.js';
import { child, parent } from '../plan/step.js';
import type { Control, Step } from '../plan/types.js';
import { PROPAGATION } from './mounts.js';
import { overlayLowerDirs } from './userns.js';
import { quoteValue } from '../spec/quote.js';
import { hasMountNamespace } from './namespaces.js';

// The root filesystem: a copy-on-write overlay over the image (or a bundle's rootfs bound
// onto itself, since pivot_root(2) needs the new root to be a mount point), then
// pivot_root, so the host's tree is not hidden (as chroot does) but detached entirely.


export const control: Control = {
  id: 'rootfs',
  title: 'Root filesystem: overlay copy-on-write layer and pivot_root',
  ref: 'workshop slides: union filesystem (no CIS check of its own; 5.5 and 5.12 build on it)',
  validate(ctx) {
    const p = ctx.spec.linux.rootfsPropagation;
    if (p && !PROPAGATION[p]) {
      throw new SpecError('linux.rootfsPropagation', `unknown propagation ${quoteValue(p)} (one of ${Object.keys(PROPAGATION).join(', ')})`);
    }
  },
  steps(ctx) {
    const steps: Step[] = [];
    steps.push(parent('prepare', 'rootfs', "the container's own directory: generated files and its layers", { action: 'mkdir', path: ctx.containerDir, mode: 0o700 }, `mkdir ${ctx.containerDir}`));
    if (ctx.overlay) {
      for (const d of [ctx.overlay.upper, ctx.overlay.work, ctx.rootfs]) {
        steps.push(parent('prepare', 'rootfs', 'overlayfs upper, work and merged directories', { action: 'mkdir', path: d, mode: 0o755 }, `mkdir ${d}`));
      }
    }
    steps.push(parent('cleanup', 'rootfs', "the container's writes go with it (its mounts went with its mount namespace)", { action: 'remove', path: ctx.containerDir }, `rm -rf ${ctx.containerDir}`));
    if (!hasMountNamespace(ctx)) {
      // the host's mount table is the container's: no mount, no pivot_root (it would swap the
      // host's root); chroot(2) changes this process's root only. The namespaces control has
      // refused every field that would need a mount.
      steps.push(child('pivot', 'rootfs', 'no mount namespace in the spec: chroot into root.path, the host\'s mount table is left as it is (as runc does)', op.chroot(ctx.rootfs)));
      return steps;
    }
    const wanted = ctx.spec.linux.rootfsPropagation ?? 'rprivate';
    const prop = PROPAGATION[wanted]!;
    // Every mount below must stay in this namespace: the inherited tree (a copy of the host's,
    // whose `/` is shared on a systemd host) becomes private, or a slave that receives the
    // host's mounts but sends none back (mount_namespaces(7), shared subtrees), before
    // anything is mounted. A shared value here would send the rootfs bind, /proc, /dev...
    // to the host's table, and pivot_root(2) refuses a new root whose parent mount is shared
    // (EINVAL): the requested sharing is applied to the new root after pivot_root instead.
    const before: typeof prop = prop.includes('SLAVE') ? ['REC', 'SLAVE'] : ['REC', 'PRIVATE'];
    steps.push(child('mounts', 'rootfs', 'no mount made here may propagate back to the host', op.mount('', '/', '', before)));
    if (ctx.overlay) {
      const { upper, work } = ctx.overlay;
      const lower = overlayLowerDirs(ctx); // idmapped copies with --userns-remap
      // overlayfs(5): lowerdir lists the top layer first.
      // In a user namespace overlayfs cannot read trusted.* xattrs: `userxattr` makes it read
      // user.overlay.* instead (overlayfs(5)); image layers carry their opaque marks in both.
      const userns = ctx.spec.linux.namespaces.some((n) => n.type === 'user');
      const data = `lowerdir=${[...lower].reverse().join(':')},upperdir=${upper},workdir=${work}${userns ? ',userxattr' : ''}`;
      steps.push(child('mounts', 'rootfs', "copy-on-write: the container's writes land in its own upper dir, never in the image", op.mount('overlay', ctx.rootfs, 'overlay', [], withMountLabel(ctx.spec, 'overlay', data))));
    } else {
      steps.push(child('mounts', 'rootfs', 'pivot_root needs the new root to be a mount point', op.mount(ctx.rootfs, ctx.rootfs, '', ['BIND', 'REC'])));
    }
    steps.push(child('mounts', 'rootfs', 'resolve every later path inside the new root, so a symlink in the image cannot point a mount at the host', op.root(ctx.rootfs)));
    steps.push(child('pivot', 'rootfs', 'swap roots and detach the old one: no host path stays reachable', op.pivotRoot(ctx.rootfs)));
    if (prop.includes('SHARED') || prop.includes('UNBINDABLE')) {
      // a new peer group of the container's own (its tree is private by now): sharing reaches
      // mount namespaces made from this one, never the host
      steps.push(child('post-pivot', 'rootfs', `linux.rootfsPropagation ${wanted}, applied once the host's tree is detached`, op.mount('', '/', '', prop)));
    }
    return steps;
  },
};
