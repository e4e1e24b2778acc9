// A minimal spec and build context for the privilege controls' unit tests.
import type { BuildContext } from '../../src/plan/types.js';
import type { Spec } from '../../src/spec/types.js';

/** CapEff measured on these machines: everything up to CAP_CHECKPOINT_RESTORE but CAP_SYS_RESOURCE. */
export const HOST_CAPEFF = 0x000001fffeffffffn;

export function baseSpec(): Spec {
  return {
    ociVersion: '1.2.0',
    process: { user: { uid: 0, gid: 0 }, args: ['/bin/sh'], cwd: '/' },
    root: { path: 'rootfs' },
    linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'ipc' }, { type: 'uts' }, { type: 'network' }] },
  };
}

export function ctxFor(spec: Spec, capEff = HOST_CAPEFF): BuildContext {
  return {
    id: 'test',
    spec,
    rootfs: '/run/tsrun/test/rootfs',
    containerDir: '/run/tsrun/test',
    host: { capEff, lsms: ['capability'], ncpu: 2 },
    terminal: false,
    waitStart: false,
  };
}
