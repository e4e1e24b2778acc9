import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { childProcess } from '../builtins.js';
import { TsrunError } from '../errors.js';
import { DOCKER_HUB } from './reference.js';

// Registry credentials where docker keeps them: $DOCKER_CONFIG/config.json or
// ~/.docker/config.json. Either inline ("auths": {"host": {"auth": base64(user:password)}})
// or in a credential helper: "credHelpers": {"host": "NAME"} for one registry,
// "credsStore": "NAME" for all, each the program docker-credential-NAME on PATH, spoken to
// as docker-credential-helpers' protocol says: `get` (server URL on stdin → JSON
// {"Username","Secret"}), `store` (JSON {"ServerURL","Username","Secret"} on stdin),
// `erase` (server URL on stdin). A secret travels only on a pipe to the helper or into the
// 0600 file; it is never an argument, never printed, never in an error message.

export class CredentialError extends TsrunError {}

/** Docker Hub's key in config.json, for historical reasons */
export const HUB_KEY = 'https://index.docker.io/v1/';

export interface Credentials {
  username?: string;
  password?: string;
  /** a registry token used as is (config.json "registrytoken") */
  bearer?: string;
}

interface AuthEntry {
  auth?: string;
  username?: string;
  password?: string;
  registrytoken?: string;
  identitytoken?: string;
}

export interface DockerConfig {
  auths?: Record<string, AuthEntry>;
  credsStore?: string;
  credHelpers?: Record<string, string>;
  [k: string]: unknown;
}

export function dockerConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.DOCKER_CONFIG || join(homedir(), '.docker'), 'config.json');
}

export function readDockerConfig(file: string): DockerConfig | undefined {
  let cfg: unknown;
  try {
    cfg = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new CredentialError(`${file}: ${(e as NodeJS.ErrnoException).code ?? 'invalid JSON'}: ${(e as Error).message}`, { cause: e });
  }
  if (typeof cfg !== 'object' || cfg === null || Array.isArray(cfg)) throw new CredentialError(`${file}: expected a JSON object`);
  return cfg as DockerConfig;
}

/** The keys config.json may use for a registry, the canonical one first. */
export function configKeys(registry: string): string[] {
  return registry === DOCKER_HUB
    ? [HUB_KEY, 'index.docker.io', 'docker.io', 'registry-1.docker.io', 'https://index.docker.io/v1', 'https://registry-1.docker.io']
    : [registry, `https://${registry}`, `http://${registry}`, `https://${registry}/v1/`, `https://${registry}/v2/`];
}

/** Which helper (if any) holds this registry's credentials: credHelpers beats credsStore. */
export function helperFor(cfg: DockerConfig | undefined, registry: string): string | undefined {
  for (const k of configKeys(registry)) if (cfg?.credHelpers?.[k]) return cfg.credHelpers[k];
  return cfg?.credsStore || undefined;
}

function checkName(name: string, file: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(name)) throw new CredentialError(`${file}: credential helper name ${JSON.stringify(name)}: letters, digits, '_', '.', '-' (the program is docker-credential-NAME)`);
  return `docker-credential-${name}`;
}

/**
 * Runs a helper verb. Its output may echo what it was given, so an error quotes only the
 * program, the verb and its exit status, and the first line of its output with any
 * secret removed.
 */
function runHelper(name: string, file: string, verb: 'get' | 'store' | 'erase', input: string, secret?: string): { ok: boolean; out: string } {
  const prog = checkName(name, file);
  const r = childProcess().spawnSync(prog, [verb], { input, encoding: 'utf8', timeout: 30_000, stdio: ['pipe', 'pipe', 'pipe'] });
  if (r.error) {
    const code = (r.error as NodeJS.ErrnoException).code;
    throw new CredentialError(`${file}: credential helper ${prog}: ${code === 'ENOENT' ? 'ENOENT (not found on PATH)' : (code ?? r.error.message)}`, { cause: r.error });
  }
  const scrub = (s: string) => (secret ? s.split(secret).join('***') : s);
  const out = scrub(`${r.stdout ?? ''}`);
  if (r.status !== 0) return { ok: false, out: scrub(`${(r.stdout || r.stderr || '').trim().split('\n')[0] ?? ''}`) };
  return { ok: true, out };
}

function fromHelper(name: string, file: string, server: string): Credentials | undefined {
  const r = runHelper(name, file, 'get', server);
  // docker-credential-helpers answers "credentials not found in native keychain" (exit 1)
  if (!r.ok) {
    if (/not found/i.test(r.out)) return undefined;
    throw new CredentialError(`${file}: credential helper docker-credential-${name} get ${server} failed: ${r.out.slice(0, 200) || 'no message'}`);
  }
  let j: { Username?: string; Secret?: string };
  try {
    j = JSON.parse(r.out);
  } catch {
    throw new CredentialError(`${file}: credential helper docker-credential-${name} get ${server}: its answer is not JSON`);
  }
  if (!j.Secret) return undefined;
  // "<token>" as the user name: the secret is an identity token (OAuth refresh), which tsrun does not exchange
  if (j.Username === '<token>') throw new CredentialError(`${file}: credential helper docker-credential-${name} holds an identity token for ${server}: not supported by tsrun; log in with a user name and password`);
  return { username: j.Username ?? '', password: j.Secret };
}

/** Credentials for a registry: its credential helper if one is configured, else "auths". */
export function dockerCredentials(registry: string, env: NodeJS.ProcessEnv = process.env): Credentials | undefined {
  const file = dockerConfigPath(env);
  const cfg = readDockerConfig(file);
  if (!cfg) return undefined;
  const helper = helperFor(cfg, registry);
  if (helper) {
    const c = fromHelper(helper, file, registry === DOCKER_HUB ? HUB_KEY : registry);
    if (c) return c;
  }
  for (const k of configKeys(registry)) {
    const a = cfg.auths?.[k];
    if (!a) continue;
    if (a.registrytoken) return { bearer: a.registrytoken };
    if (a.auth) {
      const s = Buffer.from(a.auth, 'base64').toString('utf8');
      const i = s.indexOf(':');
      if (i < 0) throw new CredentialError(`${file}: auths["${k}"].auth is not base64 of user:password`);
      return { username: s.slice(0, i), password: s.slice(i + 1) };
    }
    if (a.username && a.password) return { username: a.username, password: a.password };
  }
  return undefined;
}

function writeDockerConfig(file: string, cfg: DockerConfig): void {
  mkdirSync(join(file, '..'), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(cfg, null, '\t') + '\n', { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
}

/** Saves credentials as docker login does; returns where they went. */
export function storeCredentials(registry: string, username: string, password: string, env: NodeJS.ProcessEnv = process.env): string {
  const file = dockerConfigPath(env);
  const cfg = readDockerConfig(file) ?? {};
  const key = registry === DOCKER_HUB ? HUB_KEY : registry;
  const helper = helperFor(cfg, registry);
  if (helper) {
    const r = runHelper(helper, file, 'store', JSON.stringify({ ServerURL: key, Username: username, Secret: password }), password);
    if (!r.ok) throw new CredentialError(`${file}: credential helper docker-credential-${helper} store ${key} failed: ${r.out.slice(0, 200) || 'no message'}`);
    // as docker: an empty entry in auths says "logged in, the secret is in the helper"
    cfg.auths = { ...cfg.auths, [key]: {} };
    writeDockerConfig(file, cfg);
    return `docker-credential-${helper}`;
  }
  for (const k of configKeys(registry)) if (k !== key) delete cfg.auths?.[k];
  cfg.auths = { ...cfg.auths, [key]: { auth: Buffer.from(`${username}:${password}`).toString('base64') } };
  writeDockerConfig(file, cfg);
  return file;
}

/** Removes a registry's credentials; false when there were none. */
export function eraseCredentials(registry: string, env: NodeJS.ProcessEnv = process.env): boolean {
  const file = dockerConfigPath(env);
  const cfg = readDockerConfig(file);
  if (!cfg) return false;
  const key = registry === DOCKER_HUB ? HUB_KEY : registry;
  let found = false;
  const helper = helperFor(cfg, registry);
  if (helper) {
    const r = runHelper(helper, file, 'erase', key);
    if (r.ok) found = true;
    else if (!/not found/i.test(r.out)) throw new CredentialError(`${file}: credential helper docker-credential-${helper} erase ${key} failed: ${r.out.slice(0, 200) || 'no message'}`);
  }
  for (const k of configKeys(registry)) {
    if (cfg.auths && k in cfg.auths) {
      delete cfg.auths[k];
      found = true;
    }
  }
  if (found) writeDockerConfig(file, cfg);
  return found;
}
