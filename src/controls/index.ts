import type { Control } from '../plan/types.js';
import { control as namespaces } from './namespaces.js';
import { control as rootfs } from './rootfs.js';
import { control as mounts } from './mounts.js';
import { control as defaultDevices } from './default-devices.js';
import { control as etcFiles } from './etc-files.js';
import { control as readonlyRootfs } from './readonly-rootfs.js';
import { control as utsNet } from './uts-net.js';
import { control as network } from './network.js';
import { control as processControl } from './process.js';
import { control as cgroups } from './cgroups/index.js';
import { control as userns } from './userns.js';
import { control as devices } from './devices.js';
import { control as sysctl } from './sysctl.js';
import { control as maskedPaths } from './masked-paths.js';
import { control as rlimits } from './rlimits.js';
import { control as capabilities } from './capabilities.js';
import { control as nnp } from './nnp.js';
import { control as privileged } from './privileged.js';
import { control as seccomp } from './seccomp/index.js';
import { control as unsupported } from './unsupported.js';
import { control as hooks } from './hooks.js';
import { control as keyring } from './keyring.js';
import { control as landlock } from './landlock.js';
import { control as mac } from './mac.js';

/**
 * Every control, in registration order. Within one phase, steps run in this order, so
 * the rootfs mount precedes the spec's mounts, which precede the default devices that
 * live on the /dev tmpfs.
 */
// Privilege controls: userns before rootfs (its idmapped layers are mounted before the
// overlay), devices after default-devices (they live on the /dev tmpfs), capabilities
// before process (the bounding set is dropped before setresuid, in the same phase).
export const CONTROLS: readonly Control[] = [
  // first: a setting tsrun cannot apply is refused before anything else is judged
  unsupported,
  namespaces,
  userns,
  rootfs,
  mounts,
  defaultDevices,
  devices,
  sysctl,
  keyring,
  etcFiles,
  readonlyRootfs,
  maskedPaths,
  utsNet,
  network,
  rlimits,
  capabilities,
  nnp,
  privileged,
  seccomp,
  mac,
  landlock,
  processControl,
  cgroups,
  hooks,
];
