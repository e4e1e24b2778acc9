// `tsrun features` (OCI runtime spec, features.md): what this runtime implements, built from
// the same tables the controls use, so the answer cannot drift from the code. Engines read
// it to decide what to send (containerd and podman check mountOptions, seccomp and idmap
// support); a feature listed here that tsrun refuses would fail a container at start.
import { ALL_CAPS } from '../controls/capabilities.js';
import { FLAG_OPTIONS, PROPAGATION } from '../controls/mounts.js';
import { ARCHES } from '../controls/seccomp/arch.js';
import { ACTIONS, FILTER_FLAGS, OPS, UNSUPPORTED_ACTIONS } from '../controls/seccomp/profile.js';


export function features() {
  return {
    ociVersionMin: '1.0.0',
    ociVersionMax: '1.2.0',
    // all six, as the runtime spec places them (src/controls/hooks.ts)
    hooks: ['prestart', 'createRuntime', 'createContainer', 'startContainer', 'poststart', 'poststop'],
    // `defaults` is accepted and ignored; any other option is passed to mount(2) as data
    mountOptions: ['defaults', ...Object.keys(FLAG_OPTIONS), ...Object.keys(PROPAGATION)],
    linux: {
      // time namespaces are refused (src/controls/namespaces.ts)
      namespaces: ['cgroup', 'ipc', 'mount', 'network', 'pid', 'user', 'uts'],
      capabilities: [...ALL_CAPS],
      // cgroupfs on v1, v2 and hybrid hosts; no systemd driver (--systemd-cgroup is refused)
      cgroup: { v1: true, v2: true, systemd: false, systemdUser: false, rdma: false },
      seccomp: {
        enabled: true,
        actions: ACTIONS.filter((a) => !UNSUPPORTED_ACTIONS.has(a)), // TRACE and NOTIFY are refused
        operators: [...OPS],
        // the ABIs the compiler writes sections for (seccomp/compile.ts); other listed ones get the bad-arch action
        archs: Object.values(ARCHES).map((a) => a.scmp),
        knownFlags: Object.keys(FILTER_FLAGS),
        supportedFlags: Object.keys(FILTER_FLAGS),
      },
      // "support compiled in", not "active on this host" (runtime-spec features.md): the MAC
      // control applies both; a label the running kernel cannot enforce is refused by name
      apparmor: { enabled: true },
      selinux: { enabled: true },
      intelRdt: { enabled: false },
      mountExtensions: { idmap: { enabled: false } },
    },
    annotations: { 'org.opencontainers.runtime-spec.features': 'tsrun' },
  };
}
