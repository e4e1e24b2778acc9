// --sysctl: kernel parameters that belong to one of the container's own namespaces
// (sysctl(8), proc_sys_kernel(5)). Most of /proc/sys is global to the host: writing
// vm.* or kernel.randomize_va_space from a container would change the host for everyone,
// so only the namespaced ones are accepted, as in docker:
//  - IPC namespace: kernel.msgmax, msgmnb, msgmni, sem, shmall, shmmax, shmmni,
//    shm_rmid_forced, and fs.mqueue.*
//  - network namespace: net.* (refused with the host's network namespace)
import type { BuildContext, ChildStep, Control, Step } from '../plan/types.js';
import type { FlagDef } from '../spec/flag-types.js';
import type { NamespaceType, Spec } from '../spec/types.js';
import { SpecError, UsageError } from '../errors.js';

const IPC_KEYS = new Set([
  'kernel.msgmax',
  'kernel.msgmnb',
  'kernel.msgmni',
  'kernel.sem',
  'kernel.shmall',
  'kernel.shmmax',
  'kernel.shmmni',
  'kernel.shm_rmid_forced',
]);

/** The namespace a sysctl belongs to, or undefined when it is global to the host. */
export function sysctlNamespace(key: string): NamespaceType | undefined {
  if (IPC_KEYS.has(key) || key.startsWith('fs.mqueue.')) return 'ipc';
  if (key.startsWith('net.')) return 'network';
  return undefined;
}

const KEY_RE = /^[a-z0-9_]+(\.[a-zA-Z0-9_-]+)+$/;

/** Throws naming `where` unless `key=value` can be set in the spec's namespaces. */
export function checkSysctl(spec: Spec, key: string, value: string, where: (msg: string) => Error): void {
  if (!KEY_RE.test(key)) throw where(`"${key}" is not a sysctl name (dotted, e.g. net.ipv4.ip_forward)`);
  if (/[\n\0]/.test(value)) throw where(`value of ${key} contains a newline or NUL`);
  const ns = sysctlNamespace(key);
  if (!ns)
    throw where(
      `${key} is not namespaced: it would change the whole host. Accepted: ${[...IPC_KEYS].join(', ')}, fs.mqueue.*, net.* (with a network namespace)`,
    );
  if (!spec.linux.namespaces.some((n) => n.type === ns))
    throw where(`${key} needs the container's own ${ns} namespace, but it shares the host's (--${ns === 'ipc' ? 'ipc' : 'network'} host)`);
}

export const flags: FlagDef[] = [
  {
    syntax: '--sysctl <key=value>',
    help: 'set a namespaced kernel parameter (kernel.msg*, kernel.sem, kernel.shm*, fs.mqueue.*, net.*)',
    docker: '--sysctl',
    control: 'sysctl',
    repeatable: true,
    apply(spec, value) {
      for (const v of (Array.isArray(value) ? value : [value]).map(String)) {
        const i = v.indexOf('=');
        if (i <= 0) throw new UsageError(`--sysctl ${v}: expected KEY=VALUE`);
        // Namespaces are checked by validate(), once every flag (--network host...) is in.
        spec.linux.sysctl = { ...spec.linux.sysctl, [v.slice(0, i).trim()]: v.slice(i + 1) };
      }
    },
  },
];

export const control: Control = {
  id: 'sysctl',
  title: 'Namespaced sysctls',
  ref: 'docker --sysctl (no host-wide kernel changes from containers; no CIS check of its own)',
  validate(ctx: BuildContext): void {
    for (const [k, v] of Object.entries(ctx.spec.linux.sysctl ?? {}))
      checkSysctl(ctx.spec, k, String(v), (msg) => new SpecError(`linux.sysctl.${k}`, msg));
  },
  steps(ctx: BuildContext): Step[] {
    return Object.entries(ctx.spec.linux.sysctl ?? {}).map(([k, v]): ChildStep => {
      const path = `/proc/sys/${k.replace(/\./g, '/')}`;
      return {
        where: 'child',
        phase: 'mounts',
        op: 'WRITE_FILE',
        ints: [],
        strs: [path, String(v)],
        text: `write ${path} "${v}"`,
        // A /proc/sys file acts on the namespaces of the process that writes it, so the
        // write can go through the /proc still visible before pivot_root; after the pivot
        // the container's /proc/sys is read-only (masked-paths).
        why: `in the container's own ${sysctlNamespace(k)} namespace; written before pivot_root, before /proc/sys becomes read-only`,
        control: 'sysctl',
      };
    });
  },
};
