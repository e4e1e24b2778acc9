import type { Control } from '../plan/types.js';
import { control as namespaces } from './namespaces.js';
import { control as rootfs } from './rootfs.js';
import { control as mounts } from './mounts.js';
import { control as defaultDevices } from './default-devices.js';
import { control as etcFiles } from './etc-files.js';
import { control as readonlyRootfs } from './readonly-rootfs.js';
import { control as utsNet } from './uts-net.js';
import { control as processControl } from './process.js';

/**
 * Every control, in registration order. Within one phase, steps run in this order, so
 * the rootfs mount precedes the spec's mounts, which precede the default devices that
 * live on the /dev tmpfs.
 */
export const CONTROLS: readonly Control[] = [namespaces, rootfs, mounts, defaultDevices, etcFiles, readonlyRootfs, utsNet, processControl];
