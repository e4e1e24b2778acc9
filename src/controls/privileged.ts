// --privileged: switch the isolation controls off, as docker does (CIS 5.4 says not to).
// Every capability, no seccomp filter, no masked or read-only /proc paths, all host
// devices created and allowed in the device cgroup. Namespaces stay: it is still a
// separate pid/mount/network namespace, but root in it is host root with all powers, so
// escaping is a matter of mounting the host disk or loading a module.
import type { BuildContext, Control, Step } from '../plan/types.js';
import type { FlagDef } from '../spec/flag-types.js';
import type { Spec } from '../spec/types.js';
import { SpecError } from '../errors.js';
import { ALL_CAPS, capsFor } from './capabilities.js';
import { hostDevices, type HostDevice } from './devices.js';
import { hasUserNamespace } from './userns.js';

export const PRIVILEGED_ANNOTATION = 'io.tsrun.privileged';
export const PRIVILEGED_WARNING =
  'warning: --privileged: the container gets every capability, no seccomp filter, no masked /proc paths and all host devices; root in it is root on the host (CIS 5.4)';

let warn: (msg: string) => void = (msg) => process.stderr.write(msg + '\n');
let listDevices: () => { path: string; dev: HostDevice }[] = () => hostDevices();
/** Tests capture the warning and fake the host's /dev. */
export function setPrivilegedHooks(h: { warn?: (msg: string) => void; devices?: () => { path: string; dev: HostDevice }[] }): void {
  if (h.warn) warn = h.warn;
  if (h.devices) listDevices = h.devices;
}

export function isPrivileged(spec: Spec): boolean {
  return spec.annotations?.[PRIVILEGED_ANNOTATION] === 'true';
}

/**
 * Applies --privileged to the spec. The CLI must apply this row after the other rows
 * (cap-add/cap-drop, security-opt seccomp, device), which it overrides.
 */
export function applyPrivileged(spec: Spec): void {
  spec.process.capabilities = capsFor(ALL_CAPS);
  delete spec.linux.seccomp;
  spec.linux.maskedPaths = [];
  spec.linux.readonlyPaths = [];
  const devs = listDevices();
  spec.linux.devices = devs.map(({ path, dev }) => ({ type: dev.type, path, major: dev.major, minor: dev.minor, fileMode: dev.mode & 0o777, uid: 0, gid: 0 }));
  spec.linux.resources = { ...spec.linux.resources, devices: [{ allow: true, access: 'rwm' }] };
  spec.annotations = { ...spec.annotations, [PRIVILEGED_ANNOTATION]: 'true' };
  warn(PRIVILEGED_WARNING);
}

export const flags: FlagDef[] = [
  {
    syntax: '--privileged',
    help: 'turn off isolation: all capabilities, no seccomp, no masked paths, all host devices (warns)',
    docker: '--privileged',
    control: 'privileged',
    apply(spec, value) {
      if (value === false || value === undefined) return;
      applyPrivileged(spec);
    },
  },
];

export const control: Control = {
  id: 'privileged',
  title: 'Privileged mode (isolation off)',
  ref: 'CIS 5.4 (do not use privileged containers)',
  validate(ctx: BuildContext): void {
    if (!isPrivileged(ctx.spec)) return;
    // The host's devices and powers cannot be handed to a remapped root: mknod and most
    // of the capabilities only count in the initial user namespace (docker refuses too).
    if (hasUserNamespace(ctx.spec))
      throw new SpecError('linux.namespaces', '--privileged cannot be used with a user namespace (--userns-remap or the config file\'s userns-remap); add --userns host');
    if (ctx.spec.linux.seccomp) throw new SpecError('linux.seccomp', '--privileged runs without seccomp, but a profile was set after it');
  },
  steps(_ctx: BuildContext): Step[] {
    return [];
  },
};
