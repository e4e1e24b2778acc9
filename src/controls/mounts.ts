import { withMountLabel } from './mac.js';
import { isCgroupMount } from './cgroups/index.js';
import { statSync } from 'node:fs';
import { listRootDir } from '../kernel/in-root.js';
import { posix } from 'node:path';
import { SpecError, UnsupportedError } from '../errors.js';
import * as op from '../plan/ops.js';
import type { MountFlag } from '../plan/ops.js';
import { child } from '../plan/step.js';
import type { BuildContext, Control, Step } from '../plan/types.js';
import type { Mount } from '../spec/types.js';
import { quoteValue } from '../spec/quote.js';

// The spec's mounts (OCI config.json `mounts`, or docker's -v/--tmpfs and the default
// /proc, /dev, /sys set), mounted below the new root before pivot_root: in a user
// namespace /proc can only be mounted while another proc is fully visible (design.md
// trap 3), and bind sources are host paths only reachable before the old root goes.

export const FLAG_OPTIONS: Record<string, { set?: MountFlag; clear?: MountFlag }> = {
  ro: { set: 'RDONLY' },
  rw: { clear: 'RDONLY' },
  nosuid: { set: 'NOSUID' },
  suid: { clear: 'NOSUID' },
  nodev: { set: 'NODEV' },
  dev: { clear: 'NODEV' },
  noexec: { set: 'NOEXEC' },
  exec: { clear: 'NOEXEC' },
  sync: { set: 'SYNCHRONOUS' },
  async: { clear: 'SYNCHRONOUS' },
  dirsync: { set: 'DIRSYNC' },
  noatime: { set: 'NOATIME' },
  atime: { clear: 'NOATIME' },
  nodiratime: { set: 'NODIRATIME' },
  diratime: { clear: 'NODIRATIME' },
  relatime: { set: 'RELATIME' },
  norelatime: { clear: 'RELATIME' },
  strictatime: { set: 'STRICTATIME' },
  nostrictatime: { clear: 'STRICTATIME' },
  nosymfollow: { set: 'NOSYMFOLLOW' },
  bind: { set: 'BIND' },
  rbind: { set: 'BIND' },
};

/** Mount propagation options (mount_namespaces(7)), for mounts and for linux.rootfsPropagation. */
export const PROPAGATION: Record<string, MountFlag[]> = {
  private: ['PRIVATE'],
  rprivate: ['PRIVATE', 'REC'],
  shared: ['SHARED'],
  rshared: ['SHARED', 'REC'],
  slave: ['SLAVE'],
  rslave: ['SLAVE', 'REC'],
  unbindable: ['UNBINDABLE'],
  runbindable: ['UNBINDABLE', 'REC'],
};

export interface ParsedOptions {
  flags: Set<MountFlag>;
  recursive: boolean;
  propagation: MountFlag[][];
  data: string[];
}

export function parseOptions(options: readonly string[] = []): ParsedOptions {
  const flags = new Set<MountFlag>();
  const propagation: MountFlag[][] = [];
  const data: string[] = [];
  let recursive = false;
  for (const o of options) {
    const f = FLAG_OPTIONS[o];
    if (f) {
      if (f.set) flags.add(f.set);
      if (f.clear) flags.delete(f.clear);
      if (o === 'rbind') recursive = true;
    } else if (PROPAGATION[o]) {
      propagation.push(PROPAGATION[o]);
    } else if (o !== 'defaults') {
      data.push(o);
    }
  }
  return { flags, recursive, propagation, data };
}

/** host path of a container path below the new root */
export function under(ctx: BuildContext, path: string): string {
  const p = posix.join(ctx.rootfs, path);
  return p.length > 1 && p.endsWith('/') ? p.slice(0, -1) : p;
}

export function isBind(m: Mount): boolean {
  return m.type === 'bind' || (m.options ?? []).some((o) => o === 'bind' || o === 'rbind');
}

export function mountSteps(ctx: BuildContext, m: Mount, controlId: string, why: string): Step[] {
  const target = under(ctx, m.destination);
  const o = parseOptions(m.options);
  const steps: Step[] = [];
  const bind = isBind(m);
  // A bind mount of a file needs a file to cover; anything else a directory.
  // Sources in the container's own directory are files tsrun writes before the clone.
  const generated = m.source !== undefined && posix.dirname(m.source) === ctx.containerDir;
  if (bind && m.source && (generated || isFileSource(m.source))) steps.push(child('mounts', controlId, 'mount target', op.mkfile(target)));
  else steps.push(child('mounts', controlId, 'mount target', op.mkdir(target)));
  if (bind) {
    const flags: MountFlag[] = o.recursive ? ['BIND', 'REC'] : ['BIND'];
    steps.push(child('mounts', controlId, why, op.mount(m.source ?? '', target, '', flags)));
    // MS_BIND ignores the other flags on the first call (mount(2)); they need a remount.
    const extra = [...o.flags].filter((f) => f !== 'BIND');
    if (extra.includes('RDONLY')) {
      steps.push(child('mounts', controlId, `${m.destination} read-only: writes fail with EROFS`, op.remountReadonly(target)));
    } else if (extra.length) {
      steps.push(child('mounts', controlId, 'apply the mount options to the bind mount', op.mount('', target, '', ['REMOUNT', 'BIND', ...extra])));
    }
  } else {
    const data = o.data.filter((d) => d !== 'tmpcopyup');
    if (data.length !== o.data.length) assertNothingToCopyUp(m, ctx.rootfs);
    steps.push(child('mounts', controlId, why, op.mount(m.source ?? m.type ?? '', target, m.type ?? '', [...o.flags], withMountLabel(ctx.spec, m.type ?? '', data.join(',')))));
  }
  for (const p of o.propagation) steps.push(child('mounts', controlId, 'mount propagation as asked', op.mount('', target, '', p)));
  return steps;
}

/**
 * "tmpcopyup" is runc's and crun's extension (not in the OCI spec, not a tmpfs option: the
 * kernel says EINVAL): fill the new tmpfs with what the image had at that path. podman puts
 * it on the tmpfs it mounts at /tmp, /var/tmp and /run for `--read-only`. Over a directory
 * that is empty or absent in the rootfs there is nothing to copy, so the plain tmpfs is the
 * same thing; tsrun has no copy step, so over files it refuses rather than hide them.
 */
function assertNothingToCopyUp(m: Mount, rootfs: string): void {
  let entries: string[] | undefined;
  try {
    // the rootfs is the bundle's, i.e. image content: list it inside its root, never through
    // a symlink of its own to a host directory (docs/host-access.md)
    entries = listRootDir(rootfs, m.destination, 1000);
  } catch {
    return; // not readable while planning: the init's confined mkdir/mount reports it
  }
  if (!entries) return; // absent (e.g. an image's rootfs, not mounted yet)
  if (entries.length)
    throw new UnsupportedError(
      `mounts: "tmpcopyup" on ${m.destination}: the rootfs has ${entries.length} entr${entries.length === 1 ? 'y' : 'ies'} there (${entries.slice(0, 3).join(', ')}) and tsrun cannot copy them into the tmpfs; with podman, use --read-only-tmpfs=false or a --tmpfs ${m.destination} of your own`,
    );
}

// Whether a bind source is a file is a fact about the host, read while planning; the
// plan records the answer (mkfile vs mkdir) so it can be printed and tested.
function isFileSource(source: string): boolean {
  try {
    return !statSync(source).isDirectory();
  } catch {
    return false;
  }
}

const WHY_BY_DEST: Record<string, string> = {
  '/proc': "the container's own /proc, showing only its PID namespace",
  '/dev': 'a private /dev on tmpfs, holding only the devices tsrun puts there',
  '/dev/pts': 'a new devpts instance: ptys of this container only, never the host\'s',
  '/dev/shm': 'private POSIX shared memory',
  '/dev/mqueue': 'POSIX message queues of this IPC namespace',
  '/sys': 'sysfs read-only: the kernel\'s tunables are not the container\'s to change',
  '/etc/hostname': 'generated by tsrun (the container\'s hostname)',
  '/etc/hosts': 'generated by tsrun (localhost and the hostname)',
  '/etc/resolv.conf': "the host's DNS settings, copied",
};

export const control: Control = {
  id: 'mounts',
  title: 'Mounts and volumes (proc, dev, sys, -v, --tmpfs)',
  ref: 'CIS 5.5 (sensitive host dirs not mounted; read-only volumes), 5.19 (mount propagation not shared)',
  validate(ctx) {
    (ctx.spec.mounts ?? []).forEach((m, i) => {
      const field = `mounts[${i}]`;
      if (typeof m.destination !== 'string' || !m.destination.startsWith('/')) {
        throw new SpecError(`${field}.destination`, `must be an absolute path (got ${quoteValue(m.destination)})`);
      }
      if (posix.normalize(m.destination).split('/').includes('..')) {
        throw new SpecError(`${field}.destination`, `must not contain ".." (got ${quoteValue(m.destination)})`);
      }
      if (isBind(m) && !m.source) throw new SpecError(`${field}.source`, 'a bind mount needs a source');
    });
  },
  steps(ctx) {
    // cgroup/cgroup2 mounts need the host's hierarchy layout: src/controls/cgroups does them
    return (ctx.spec.mounts ?? []).filter((m) => !isCgroupMount(m)).flatMap((m) =>
      mountSteps(ctx, m, 'mounts', WHY_BY_DEST[m.destination] ?? (isBind(m) ? `volume ${m.source} → ${m.destination}` : `${m.type} on ${m.destination}`)),
    );
  },
};
