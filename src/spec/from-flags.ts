import { relabelRefusal } from '../controls/mac.js';
import { readFileSync, statSync } from 'node:fs';
import { posix } from 'node:path';
import { UsageError, UnsupportedError } from '../errors.js';
import type { ImageConfig } from '../image/types.js';
import { describeError } from '../kernel/errno.js';
import { DEFAULT_PATH, OCI_VERSION, defaultMounts, defaultNamespaces } from './defaults.js';
import type { FlagDef, FlagEnv } from './flag-types.js';
import type { Mount, Spec } from './types.js';
import { lookupUser } from './users.js';
import { finishSeccomp } from '../controls/seccomp/index.js';
import { NETWORK_ANNOTATION, NETWORK_NAME_RE } from '../network/types.js';

/** `tsrun run` options after parsing (commander's camelCase names). */
export interface RunOptions {
  interactive?: boolean;
  tty?: boolean;
  rm?: boolean;
  name?: string;
  env?: string[];
  envFile?: string[];
  workdir?: string;
  user?: string;
  entrypoint?: string;
  hostname?: string;
  network?: string;
  ip?: string;
  readOnly?: boolean;
  volume?: string[];
  tmpfs?: string[];
  securityOpt?: string[];
  [other: string]: unknown;
}

export interface SpecInput {
  id: string;
  image: { name: string; config: ImageConfig };
  /** the command and its arguments after the image name */
  args: string[];
  opts: RunOptions;
  /** host directory that becomes / */
  rootfs: string;
  /** host directory for generated /etc files */
  containerDir: string;
  env: FlagEnv;
  /** host environment, for `-e NAME` without a value */
  hostEnv?: Record<string, string | undefined>;
  /** control flag rows to apply after the core ones (src/cli/flags.ts) */
  flags?: readonly FlagDef[];
  /** user's terminal size, for process.consoleSize */
  consoleSize?: { height: number; width: number };
  /** defaults applied before the flag rows (docker's privilege defaults, the config file) */
  beforeFlags?: (spec: Spec) => void;
}

export function parseEnvFile(path: string, hostEnv: Record<string, string | undefined>): string[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new UsageError(`--env-file ${path}: cannot read (${describeError(e)})`, { cause: e });
  }
  return text
    .split('\n')
    .map((l) => l.replace(/^\s+/, ''))
    .filter((l) => l && !l.startsWith('#'))
    .flatMap((l) => envEntry(l, hostEnv, `--env-file ${path}`));
}

function envEntry(e: string, hostEnv: Record<string, string | undefined>, flag: string): string[] {
  const eq = e.indexOf('=');
  const name = eq < 0 ? e : e.slice(0, eq);
  if (!/^[^=\s]+$/.test(name)) throw new UsageError(`${flag}: invalid variable name in ${JSON.stringify(e)}`);
  if (eq >= 0) return [e];
  // docker: `-e NAME` passes the host's value, and nothing when it is unset
  const v = hostEnv[name];
  return v === undefined ? [] : [`${name}=${v}`];
}

/** Later entries win, order of first appearance kept (as docker merges image and -e env). */
export function mergeEnv(...lists: string[][]): string[] {
  const m = new Map<string, string>();
  for (const l of lists) for (const e of l) m.set(e.slice(0, e.indexOf('=')), e);
  return [...m.values()];
}

export function parseVolume(v: string, flag = '--volume'): Mount {
  const parts = v.split(':');
  if (parts.length < 2 || parts.length > 3 || !parts[0] || !parts[1]) {
    throw new UsageError(`${flag} ${JSON.stringify(v)}: expected HOST-PATH:CONTAINER-PATH[:ro|rw]`);
  }
  const [src, dest, mode = 'rw'] = parts as [string, string, string?];
  if (!src.startsWith('/')) throw new UsageError(`${flag} ${JSON.stringify(v)}: named volumes are not supported; the host path must be absolute`);
  if (!dest.startsWith('/')) throw new UsageError(`${flag} ${JSON.stringify(v)}: the container path must be absolute`);
  if (posix.normalize(dest) === '/') throw new UsageError(`${flag} ${JSON.stringify(v)}: cannot mount over the container's /`);
  const options = ['rbind', 'rprivate'];
  for (const o of mode.split(',')) {
    if (o === 'ro' || o === 'rw') options.push(o);
    else if (o === 'z' || o === 'Z') {
      const refused = relabelRefusal(flag, v, o);
      if (refused) throw refused;
      options.push(o); // src/controls/mac.ts relabels the source before the container starts
    }
    else throw new UsageError(`${flag} ${JSON.stringify(v)}: unknown option ${JSON.stringify(o)} (ro or rw)`);
  }
  try {
    statSync(src);
  } catch (e) {
    throw new UsageError(`${flag} ${JSON.stringify(v)}: host path ${src}: ${describeError(e)}`, { cause: e });
  }
  return { destination: posix.normalize(dest), type: 'bind', source: src, options };
}

export function parseTmpfs(v: string, flag = '--tmpfs'): Mount {
  const i = v.indexOf(':');
  const dest = i < 0 ? v : v.slice(0, i);
  const extra = i < 0 ? [] : v.slice(i + 1).split(',').filter(Boolean);
  if (!dest.startsWith('/')) throw new UsageError(`${flag} ${JSON.stringify(v)}: the container path must be absolute`);
  return { destination: posix.normalize(dest), type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'noexec', ...extra] };
}

export function commandLine(config: ImageConfig, args: string[], entrypoint: string | undefined): string[] {
  // docker: --entrypoint replaces the image's Entrypoint and drops its Cmd; arguments
  // after the image replace Cmd.
  const ep = entrypoint !== undefined ? (entrypoint === '' ? [] : [entrypoint]) : (config.Entrypoint ?? []);
  const cmd = args.length ? args : entrypoint !== undefined ? [] : (config.Cmd ?? []);
  return [...ep, ...cmd];
}

const HOSTNAME_RE = /^[a-zA-Z0-9]([a-zA-Z0-9.-]{0,62})$/;

/** Pure: flags + image config → OCI spec. */
export function specFromFlags(input: SpecInput): Spec {
  const { opts, image, id } = input;
  const hostEnv = input.hostEnv ?? {};
  const args = commandLine(image.config, input.args, opts.entrypoint);
  if (args.length === 0) throw new UsageError(`no command specified: image ${image.name} has no Entrypoint or Cmd; give one after the image name`);

  const hostname = opts.hostname ?? id.slice(0, 12);
  if (!HOSTNAME_RE.test(hostname)) throw new UsageError(`--hostname ${JSON.stringify(hostname)}: not a valid hostname (letters, digits, '.', '-'; at most 63 characters)`);

  const network = opts.network ?? 'none';
  if (/^(container|ns):/.test(network)) throw new UnsupportedError(`--network ${JSON.stringify(network)}: joining another container's or a path's namespace is not supported (none, host, or a network from tsrun network ls)`);
  if (network === 'bridge' || network === 'default')
    throw new UnsupportedError(`--network ${JSON.stringify(network)}: tsrun has no default bridge network (docker0); make one with tsrun network create NAME, then --network NAME`);
  if (network !== 'none' && network !== 'host' && !NETWORK_NAME_RE.test(network)) throw new UsageError(`--network ${JSON.stringify(network)}: not a network name (none, host, or a network from tsrun network ls)`);
  // docker: --ip needs a user-defined network to take the address from
  if (opts.ip !== undefined && (network === 'none' || network === 'host')) throw new UsageError(`--ip ${String(opts.ip)}: needs --network NAME (a user-defined network), not --network ${network}`);

  const userSpec = opts.user ?? image.config.User ?? '';
  const user = userSpec ? lookupUser(userSpec, input.env.readImageFile, opts.user ? '--user' : `image ${image.name} User`) : { uid: 0, gid: 0, additionalGids: [], home: '/root' };

  const base = [`PATH=${DEFAULT_PATH}`, `HOSTNAME=${hostname}`];
  const userEnv = [...(opts.envFile ?? []).flatMap((f) => parseEnvFile(f, hostEnv)), ...(opts.env ?? []).flatMap((e) => envEntry(e, hostEnv, '--env'))];
  const env = mergeEnv(base, opts.tty ? ['TERM=xterm'] : [], image.config.Env ?? [], userEnv);
  if (!env.some((e) => e.startsWith('HOME='))) env.push(`HOME=${user.home || '/'}`);

  const cwd = opts.workdir ?? (image.config.WorkingDir || '/');
  if (!cwd.startsWith('/')) throw new UsageError(`--workdir ${JSON.stringify(cwd)}: must be an absolute path`);

  const mounts: Mount[] = [
    ...defaultMounts(),
    ...['hostname', 'hosts', 'resolv.conf'].map((f) => ({
      destination: `/etc/${f}`,
      type: 'bind',
      source: posix.join(input.containerDir, f),
      options: ['rbind', 'rprivate'],
    })),
    ...(opts.volume ?? []).map((v) => parseVolume(v)),
    ...(opts.tmpfs ?? []).map((t) => parseTmpfs(t)),
  ];

  const spec: Spec = {
    ociVersion: OCI_VERSION,
    process: {
      terminal: Boolean(opts.tty),
      ...(opts.tty && input.consoleSize ? { consoleSize: input.consoleSize } : {}),
      user: { uid: user.uid, gid: user.gid, ...(user.additionalGids.length ? { additionalGids: user.additionalGids } : {}) },
      args,
      env,
      cwd: posix.normalize(cwd),
    },
    root: { path: input.rootfs, readonly: false },
    hostname,
    mounts,
    annotations: {
      'org.opencontainers.image.ref.name': image.name,
      ...(opts.name ? { 'tsrun.name': opts.name } : {}),
      ...(network !== 'none' && network !== 'host' ? { [NETWORK_ANNOTATION]: network } : {}),
    },
    linux: {
      namespaces: defaultNamespaces(network === 'host'),
      rootfsPropagation: 'rprivate',
    },
  };
  input.beforeFlags?.(spec);
  for (const f of input.flags ?? []) {
    const key = optionKey(f.syntax);
    const value = opts[key];
    if (f.apply && value !== undefined && !(Array.isArray(value) && value.length === 0)) f.apply(spec, value, input.env);
  }
  // the seccomp profile depends on the final capabilities (docker's includes/excludes.caps)
  finishSeccomp(spec);
  return spec;
}

/** commander's attribute name for a flag: `--read-only <x>` → `readOnly`. */
export function optionKey(syntax: string): string {
  const long = /--([a-z0-9-]+)/.exec(syntax)?.[1];
  if (!long) throw new Error(`flag syntax without a long name: ${syntax}`);
  return long.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}
