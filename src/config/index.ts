// tsrun's host-wide configuration: /etc/tsrun/config.json, overridable with --config or
// TSRUN_CONFIG. The keys and value shapes are those of docker's daemon.json for the same
// settings, so the workshop's daemon.json works as it is:
//   { "userns-remap": "default", "no-new-privileges": true, "live-restore": true,
//     "selinux-enabled": true, "seccomp-profile": "/etc/tsrun/seccomp.json",
//     "default-ulimits": { "nofile": { "Name": "nofile", "Soft": 20000, "Hard": 20000 } } }
// Unknown keys are an error (a typo must not silently leave a control off).
import { existsSync, readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { isAbsolute } from 'node:path';
import type { Spec } from '../spec/types.js';
import { SpecError, UsageError } from '../errors.js';
import { parseUlimit, setRlimits } from '../controls/rlimits.js';
import { applyRemap, hasUserNamespace, resolveRemap, type IdDb } from '../controls/userns.js';
import { parseLogOpts } from '../runtime/logs.js';

export const DEFAULT_CONFIG_PATH = '/etc/tsrun/config.json';

export interface Ulimit {
  Name: string;
  Soft: number;
  Hard: number;
}

export interface TsrunConfig {
  /** "default", "USER[:GROUP]", or absent/"" for no remap */
  'userns-remap'?: string;
  'no-new-privileges'?: boolean;
  'default-ulimits'?: Record<string, Ulimit>;
  /** path of a seccomp profile (docker's JSON format) used when no --security-opt seccomp is given; "unconfined" for none */
  'seccomp-profile'?: string;
  /** accepted for daemon.json compatibility: tsrun has no daemon, every container is already independent of it */
  'live-restore'?: boolean;
  /** accepted; SELinux labels are refused at run time when SELinux is not active */
  'selinux-enabled'?: boolean;
  /** inter-container communication: docker's applies to docker0; tsrun's is the default of `network create` (docs/networks.md) */
  icc?: boolean;
  /** docker's json-file options for detached containers' logs: max-size, max-file (src/runtime/logs.ts) */
  'log-opts'?: Record<string, string>;
  /** Docker Hub mirrors, tried in order before Docker Hub: "http://127.0.0.1:5000", "https://mirror.example" */
  'registry-mirrors'?: string[];
  /** registries reached over plain http: "host:port", "host" or a CIDR "10.0.0.0/8" (loopback always is) */
  'insecure-registries'?: string[];
}

export interface LoadedConfig {
  path: string;
  /** false when the default path does not exist (an explicit path must exist) */
  found: boolean;
  config: TsrunConfig;
  /** settings that cannot take effect on this host, one line each, for stderr */
  warnings: string[];
}

const KEYS = ['userns-remap', 'no-new-privileges', 'default-ulimits', 'seccomp-profile', 'live-restore', 'selinux-enabled', 'icc', 'log-opts', 'registry-mirrors', 'insecure-registries'] as const;

/** --config beats TSRUN_CONFIG beats /etc/tsrun/config.json. */
export function configPath(flag?: string, env: NodeJS.ProcessEnv = process.env): { path: string; explicit: boolean } {
  if (flag) return { path: flag, explicit: true };
  if (env.TSRUN_CONFIG) return { path: env.TSRUN_CONFIG, explicit: true };
  return { path: DEFAULT_CONFIG_PATH, explicit: false };
}

function bad(path: string, key: string, msg: string): UsageError {
  return new UsageError(`${path}: "${key}": ${msg}`);
}

/** Validates parsed JSON; every error names the file and the key. */
export function validateConfig(raw: unknown, path: string): TsrunConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new UsageError(`${path}: expected a JSON object`);
  const obj = raw as Record<string, unknown>;
  for (const k of Object.keys(obj))
    if (!(KEYS as readonly string[]).includes(k)) throw bad(path, k, `unknown key (known: ${KEYS.join(', ')})`);
  const cfg: TsrunConfig = {};
  for (const k of ['no-new-privileges', 'live-restore', 'selinux-enabled', 'icc'] as const) {
    if (obj[k] === undefined) continue;
    if (typeof obj[k] !== 'boolean') throw bad(path, k, `expected true or false, got ${JSON.stringify(obj[k])}`);
    cfg[k] = obj[k] as boolean;
  }
  const remap = obj['userns-remap'];
  if (remap !== undefined) {
    if (typeof remap !== 'string' || !/^(|default|[^:\s]+(:[^:\s]+)?)$/.test(remap))
      throw bad(path, 'userns-remap', `expected "default" or "USER[:GROUP]", got ${JSON.stringify(remap)}`);
    cfg['userns-remap'] = remap;
  }
  const sp = obj['seccomp-profile'];
  if (sp !== undefined) {
    if (typeof sp !== 'string' || (sp !== 'unconfined' && sp !== 'builtin' && !isAbsolute(sp)))
      throw bad(path, 'seccomp-profile', `expected an absolute path, "builtin" or "unconfined", got ${JSON.stringify(sp)}`);
    if (isAbsolute(sp) && !existsSync(sp)) throw bad(path, 'seccomp-profile', `${sp}: ENOENT (no such file)`);
    cfg['seccomp-profile'] = sp;
  }
  const du = obj['default-ulimits'];
  if (du !== undefined) {
    if (typeof du !== 'object' || du === null || Array.isArray(du))
      throw bad(path, 'default-ulimits', 'expected an object like {"nofile": {"Name": "nofile", "Soft": 1024, "Hard": 2048}}');
    const out: Record<string, Ulimit> = {};
    for (const [name, v] of Object.entries(du as Record<string, unknown>)) {
      const key = `default-ulimits.${name}`;
      if (typeof v !== 'object' || v === null) throw bad(path, key, 'expected {"Name", "Soft", "Hard"}');
      const u = v as Record<string, unknown>;
      for (const f of Object.keys(u)) if (!['Name', 'Soft', 'Hard'].includes(f)) throw bad(path, `${key}.${f}`, 'unknown key (Name, Soft, Hard)');
      if (u.Name !== undefined && u.Name !== name) throw bad(path, `${key}.Name`, `"${String(u.Name)}" differs from the key "${name}"`);
      for (const f of ['Soft', 'Hard'] as const)
        if (!Number.isSafeInteger(u[f]) || (u[f] as number) < -1) throw bad(path, `${key}.${f}`, `expected an integer >= -1 (-1 = unlimited), got ${JSON.stringify(u[f])}`);
      try {
        parseUlimit(`${name}=${String(u.Soft)}:${String(u.Hard)}`, 'x');
      } catch (e) {
        throw bad(path, key, (e as Error).message.replace(/^x \S+?: /, ''));
      }
      out[name] = { Name: name, Soft: u.Soft as number, Hard: u.Hard as number };
    }
    cfg['default-ulimits'] = out;
  }
  const lo = obj['log-opts'];
  if (lo !== undefined) {
    // daemon.json's values are strings ("10m", "3"), as docker requires
    if (typeof lo !== 'object' || lo === null || Array.isArray(lo) || Object.values(lo).some((v) => typeof v !== 'string'))
      throw bad(path, 'log-opts', 'expected an object of strings like {"max-size": "10m", "max-file": "3"}');
    parseLogOpts(lo as Record<string, string>, (k) => `${path}: "log-opts.${k}"`);
    cfg['log-opts'] = lo as Record<string, string>;
  }
  const rm = obj['registry-mirrors'];
  if (rm !== undefined) {
    if (!Array.isArray(rm)) throw bad(path, 'registry-mirrors', `expected a list of URLs like ["https://mirror.example"], got ${JSON.stringify(rm)}`);
    cfg['registry-mirrors'] = rm.map((m, i) => {
      const key = `registry-mirrors[${i}]`;
      let u: URL;
      try {
        if (typeof m !== 'string') throw new Error();
        u = new URL(m);
      } catch {
        throw bad(path, key, `expected a URL like "https://mirror.example" or "http://127.0.0.1:5000", got ${JSON.stringify(m)}`);
      }
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw bad(path, key, `${JSON.stringify(m)}: the scheme must be http or https`);
      // a mirror serves /v2/ at its root, as docker requires; credentials go in config.json, not here
      if (u.username || u.password || u.search || u.hash || (u.pathname !== '/' && u.pathname !== '')) throw bad(path, key, `${JSON.stringify(m)}: only scheme://host[:port] (no path, user, query or fragment)`);
      return u.origin;
    });
  }
  const ir = obj['insecure-registries'];
  if (ir !== undefined) {
    if (!Array.isArray(ir)) throw bad(path, 'insecure-registries', `expected a list like ["10.0.0.5:5000", "192.168.0.0/16"], got ${JSON.stringify(ir)}`);
    cfg['insecure-registries'] = ir.map((e, i) => {
      const key = `insecure-registries[${i}]`;
      if (typeof e !== 'string') throw bad(path, key, `expected "host[:port]" or a CIDR, got ${JSON.stringify(e)}`);
      if (e.includes('://')) throw bad(path, key, `${JSON.stringify(e)}: no scheme, only host[:port] or a CIDR (as docker's)`);
      const c = /^(.+)\/(\d{1,3})$/.exec(e);
      if (c) {
        const fam = isIP(c[1]!);
        if (!fam || Number(c[2]) > (fam === 4 ? 32 : 128)) throw bad(path, key, `${JSON.stringify(e)}: not a CIDR (address/prefix)`);
      } else if (!/^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9a-fA-F:]+\])(?::[0-9]{1,5})?$/.test(e) && !isIP(e))
        throw bad(path, key, `${JSON.stringify(e)}: expected host[:port] or a CIDR`);
      return e;
    });
  }
  return cfg;
}

export interface HostFacts {
  lsms: string[];
  /** where the LSM list was read (securityfs, the command line, the build config) */
  lsmSource?: string;
}

/** Reads and validates the config file. A missing default file means "no defaults". */
export function loadConfig(flag?: string, env: NodeJS.ProcessEnv = process.env, host?: HostFacts): LoadedConfig {
  const { path, explicit } = configPath(flag, env);
  if (!existsSync(path)) {
    if (explicit) throw new UsageError(`config file ${path}: ENOENT (no such file)`);
    return { path, found: false, config: {}, warnings: [] };
  }
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new UsageError(`config file ${path}: ${code ?? 'invalid JSON'} (${(e as Error).message})`, { cause: e });
  }
  const config = validateConfig(raw, path);
  const warnings: string[] = [];
  if (config['selinux-enabled'] && host && !host.lsms.includes('selinux'))
    warnings.push(
      `${path}: "selinux-enabled": SELinux is not active on this host (LSMs: ${host.lsms.join(', ') || 'unknown'}${host.lsmSource ? `, from ${host.lsmSource}` : ''}); containers get no SELinux labels`,
    );
  // dockerd's live-restore keeps containers running while the daemon is down; tsrun has no
  // daemon, so its containers always outlive the CLI (docs/live-restore.md)
  if (config['live-restore'] === false)
    warnings.push(`${path}: "live-restore": false has no effect: tsrun has no daemon, and every container outlives the tsrun that started it (held by its own tsrun-monitor or the kernel)`);
  return { path, found: true, config, warnings };
}

/**
 * Puts the config's defaults into a spec built from flags, before the flags are applied
 * (so --ulimit, --security-opt no-new-privileges=false and --userns host override them).
 */
export function applyConfigDefaults(spec: Spec, cfg: TsrunConfig, db?: IdDb, planOnly = false): void {
  if (cfg['no-new-privileges'] !== undefined) spec.process.noNewPrivileges = cfg['no-new-privileges'];
  const du = cfg['default-ulimits'];
  if (du) setRlimits(spec, Object.values(du).map((u) => parseUlimit(`${u.Name}=${u.Soft}:${u.Hard}`, `default-ulimits.${u.Name}`)));
  const remap = cfg['userns-remap'];
  if (remap && !hasUserNamespace(spec)) {
    try {
      applyRemap(spec, resolveRemap(remap, db, planOnly));
    } catch (e) {
      throw new UsageError(`config "userns-remap": ${(e as Error).message.replace(/^--userns-remap[^:]*: /, '')}`, { cause: e });
    }
  }
}

/** `default-ulimits.NAME` when the limit of `type` comes from the config file (no --ulimit NAME=). */
export function rlimitConfigKey(cfg: TsrunConfig, type: string, ulimitFlags: unknown): string | undefined {
  const name = type.replace(/^RLIMIT_/, '').toLowerCase();
  if (!cfg['default-ulimits']?.[name]) return undefined;
  const flags = (Array.isArray(ulimitFlags) ? ulimitFlags : ulimitFlags === undefined ? [] : [ulimitFlags]).map(String);
  if (flags.some((f) => f.trim().startsWith(`${name}=`))) return undefined;
  return `default-ulimits.${name}`;
}

/**
 * A limit the host cannot grant, when it came from the config file, is reported against the
 * file and its key (the learner edits the file, not a flag they never typed).
 */
export function configRlimitError(e: unknown, spec: Spec, loaded: Pick<LoadedConfig, 'path' | 'config'>, ulimitFlags: unknown): unknown {
  if (!(e instanceof SpecError)) return e;
  const m = /^process\.rlimits\[(\d+)\]/.exec(e.field);
  const l = m ? spec.process.rlimits?.[Number(m[1])] : undefined;
  const key = l ? rlimitConfigKey(loaded.config, l.type, ulimitFlags) : undefined;
  if (!key) return e;
  const name = key.slice('default-ulimits.'.length);
  const msg = e.message
    .slice(e.field.length + 2)
    .replace(/ \(--ulimit \w+\)/, '')
    .replace(/, e\.g\. --ulimit \w+=(\S+):(\S+)$/, (_, s: string, h: string) => `, e.g. "${name}": {"Name": "${name}", "Soft": ${s === 'unlimited' ? -1 : s}, "Hard": ${h === 'unlimited' ? -1 : h}}`);
  return new UsageError(`${loaded.path}: "${key}": ${msg}`, { cause: e });
}
