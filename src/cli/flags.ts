import type { FlagDef } from '../spec/flag-types.js';
import { flags as cgroupFlags } from '../controls/cgroups/flags.js';
import { UnsupportedError, UsageError } from '../errors.js';
import { applyPrivilegeSecurityOpt } from '../config/spec-defaults.js';
import { flags as capabilityFlags } from '../controls/capabilities.js';
import { flags as usernsFlags } from '../controls/userns.js';
import { flags as rlimitFlags } from '../controls/rlimits.js';
import { flags as deviceFlags } from '../controls/devices.js';
import { flags as sysctlFlags } from '../controls/sysctl.js';
import { flags as privilegedFlags } from '../controls/privileged.js';
import { applySeccompSecurityOpt } from '../controls/seccomp/index.js';
import { applyLandlockSecurityOpt } from '../controls/landlock.js';

/** The annotation `run --label` writes: the container's labels as a JSON object. */
export const LABELS_ANNOTATION = 'tsrun.labels';

/** A container's labels (a damaged or foreign annotation reads as none). */
export function labelsOf(annotations: Record<string, string> | undefined): Record<string, string> {
  try {
    const v = JSON.parse(annotations?.[LABELS_ANNOTATION] ?? '{}') as unknown;
    if (!v || typeof v !== 'object' || Array.isArray(v)) return {};
    return Object.fromEntries(Object.entries(v).filter(([, x]) => typeof x === 'string')) as Record<string, string>;
  } catch {
    return {};
  }
}

/**
 * The image's labels under the container's --label values (docker merges them so). The image
 * config is the image's data: only string values are kept, and at most 1000 of them.
 */
export function withImageLabels(annotations: Record<string, string> | undefined, image: Record<string, unknown> | null | undefined): Record<string, string> | undefined {
  if (!image || typeof image !== 'object' || Array.isArray(image)) return annotations;
  const fromImage = Object.entries(image)
    .filter((e): e is [string, string] => typeof e[1] === 'string' && e[0] !== '')
    .slice(0, 1000);
  if (fromImage.length === 0) return annotations;
  return { ...annotations, [LABELS_ANNOTATION]: JSON.stringify({ ...Object.fromEntries(fromImage), ...labelsOf(annotations) }) };
}

// The flag table of `run` / `explain`: --help, docs/flags.md and the spec builder all read
// it. Core rows are applied by src/spec/from-flags.ts itself (they shape the whole spec);
// control rows carry their own `apply`.
export const CORE_FLAGS: FlagDef[] = [
  { syntax: '-i, --interactive', help: 'keep stdin open: the container reads tsrun\'s stdin', docker: '-i', control: 'process' },
  { syntax: '-t, --tty', help: 'give the container a terminal (a pty of its own devpts)', docker: '-t', control: 'process' },
  { syntax: '-d, --detach', help: 'run in the background (a tsrun-monitor holds it); print the id', docker: '-d', control: 'process' },
  { syntax: '--log-opt <key=value>', help: 'json-file log of a detached container: max-size=10m, max-file=3 (repeatable; default: the config file\'s "log-opts", else unlimited)', docker: '--log-opt', control: 'process', repeatable: true },
  { syntax: '--rm', help: 'remove the container when it exits', docker: '--rm', control: 'process' },
  { syntax: '--name <name>', help: 'a name for the container', docker: '--name', control: 'process' },
  {
    syntax: '-l, --label <key[=value]>',
    help: 'a label for ps --filter label=… and {{.Labels}} (repeatable); kept in the spec\'s annotations as JSON (tsrun.labels)',
    docker: '--label',
    control: 'process',
    repeatable: true,
    apply: (spec, value) => {
      const labels: Record<string, string> = {};
      for (const l of (Array.isArray(value) ? value : [value]).map(String)) {
        const eq = l.indexOf('=');
        const key = eq < 0 ? l : l.slice(0, eq);
        if (!key.trim()) throw new UsageError(`--label ${JSON.stringify(l)}: expected KEY or KEY=VALUE`);
        labels[key] = eq < 0 ? '' : l.slice(eq + 1);
      }
      spec.annotations = { ...spec.annotations, [LABELS_ANNOTATION]: JSON.stringify(labels) };
    },
  },
  { syntax: '-e, --env <NAME[=VALUE]>', help: 'set an environment variable (repeatable)', docker: '-e', control: 'process', repeatable: true },
  { syntax: '--env-file <file>', help: 'read NAME=VALUE lines from a file (repeatable)', docker: '--env-file', control: 'process', repeatable: true },
  { syntax: '-w, --workdir <dir>', help: 'working directory inside the container', docker: '-w', control: 'process' },
  { syntax: '-u, --user <user[:group]>', help: 'user (name or uid) and group, from the image\'s /etc/passwd and /etc/group', docker: '-u', control: 'process' },
  { syntax: '--entrypoint <cmd>', help: 'override the image\'s entrypoint', docker: '--entrypoint', control: 'process' },
  { syntax: '-h, --hostname <name>', help: 'container hostname (default: the short container id)', docker: '--hostname', control: 'uts-net' },
  { syntax: '--network <mode>', help: 'none (own namespace, loopback only; the default), host, or NAME of a tsrun network (eth0 on its bridge)', docker: '--network', control: 'namespaces' },
  { syntax: '-p, --publish <[ip:][hostPort:]ctrPort[/proto]>', help: 'with --network NAME: forward a host port to the container (CNI portmap; bind to 127.0.0.1 unless you mean every address) (repeatable)', docker: '-p', control: 'network', repeatable: true },
  { syntax: '-P, --publish-all', help: 'with --network NAME: publish every port the image EXPOSEs on a free host port', docker: '-P', control: 'network' },
  { syntax: '--network-alias <name>', help: 'with --network NAME: another name the network\'s other containers know this one by (repeatable)', docker: '--network-alias', control: 'network', repeatable: true },
  { syntax: '--add-host <host:ip>', help: 'an extra line in the container\'s /etc/hosts (repeatable)', docker: '--add-host', control: 'etc-files', repeatable: true },
  { syntax: '--dns <ip>', help: 'a nameserver for the container\'s /etc/resolv.conf instead of the host\'s (repeatable)', docker: '--dns', control: 'etc-files', repeatable: true },
  { syntax: '--dns-search <domain>', help: 'a search domain for the container\'s /etc/resolv.conf (repeatable)', docker: '--dns-search', control: 'etc-files', repeatable: true },
  { syntax: '--ip <address>', help: 'with --network NAME: this IPv4 address instead of the next free one', docker: '--ip', control: 'network' },
  {
    syntax: '--read-only',
    help: 'mount the root filesystem read-only (writes fail with EROFS)',
    docker: '--read-only',
    control: 'readonly-rootfs',
    apply: (spec) => {
      spec.root.readonly = true;
    },
  },
  { syntax: '-v, --volume <host:ctr[:opts]>', help: 'bind-mount a host path; opts (comma-separated): ro|rw, z|Z (SELinux relabel: shared|private) (repeatable)', docker: '-v', control: 'mounts', repeatable: true },
  { syntax: '--tmpfs <path[:opts]>', help: 'mount a tmpfs (nosuid,nodev,noexec plus opts) (repeatable)', docker: '--tmpfs', control: 'mounts', repeatable: true },
];

/** docker's --security-opt: each control takes the forms it owns. */
export const SECURITY_OPT_FLAG: FlagDef = {
  syntax: '--security-opt <opt>',
  help: 'no-new-privileges[=true|false], systempaths=unconfined, seccomp=unconfined|builtin|PROFILE.json, landlock=builtin|unconfined|RULES.json, apparmor=PROFILE|unconfined, label=type:T|level:L|user:U|role:R|disable (repeatable)',
  docker: '--security-opt',
  control: 'nnp',
  repeatable: true,
  apply(spec, value) {
    for (const o of (Array.isArray(value) ? value : [value]).map(String)) {
      if (!applyPrivilegeSecurityOpt(spec, o) && !applySeccompSecurityOpt(spec, o) && !applyLandlockSecurityOpt(spec, o)) throw new UnsupportedError(`--security-opt ${JSON.stringify(o)}: not supported`);
    }
  },
};

/**
 * Every row of the table; control modules add theirs here. --privileged comes last: it
 * overrides what --cap-add, --security-opt and --device set.
 */
export const RUN_FLAGS: FlagDef[] = [
  ...CORE_FLAGS,
  ...usernsFlags,
  ...capabilityFlags,
  SECURITY_OPT_FLAG,
  ...rlimitFlags,
  ...deviceFlags,
  ...sysctlFlags,
  ...privilegedFlags,
  ...cgroupFlags,
];
