import { createHash } from 'node:crypto';
import { closeSync, openSync, rmSync, writeSync } from 'node:fs';
import { BlockList, isIP } from 'node:net';
import { http, https } from '../builtins.js';
import { TsrunError, UnsupportedError } from '../errors.js';
import { registryHost, type Reference } from './reference.js';
import type { Credentials } from './credentials.js';
import { MEDIA, type Descriptor } from './store.js';
import { paced } from './gc-pace.js';

// A client for the OCI distribution API (GET /v2/<name>/manifests/<ref>, /v2/<name>/blobs/<digest>)
// on node:http(s). Authentication as Docker Hub does it: the registry answers 401 with
// `WWW-Authenticate: Bearer realm="…",service="…",scope="…"`; we ask the realm for a token
// (anonymously, or with the credentials of ~/.docker/config.json) and retry with it.
// Redirects (blob storage on another host) are followed by hand so the Authorization header
// never travels to another origin.
//
// Why node:http and not fetch: fetch (undici) parses HTTP with llhttp compiled to
// WebAssembly, and V8 compiles that module again with its optimising compiler on a
// background thread, whose working memory (~10–30 MB of malloc, measured: docs/images.md
// "Memory of a pull") lands in the pull's peak RSS even when only a manifest went through
// it. node:http parses in C, and pauses the socket while the reader (hash, file) is behind.

export class RegistryError extends TsrunError {}

export const MANIFEST_ACCEPT = [MEDIA.ociIndex, MEDIA.dockerList, MEDIA.ociManifest, MEDIA.dockerManifest].join(', ');

export { dockerCredentials, type Credentials } from './credentials.js';

/** Parses `Bearer realm="…",service="…"` (quoted values may hold commas). */
export function parseChallenge(h: string): { scheme: string; params: Record<string, string> } {
  const m = /^\s*(\w+)\s*(.*)$/s.exec(h);
  if (!m) return { scheme: '', params: {} };
  const params: Record<string, string> = {};
  const re = /(\w+)=(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g;
  for (let x; (x = re.exec(m[2]!)); ) params[x[1]!.toLowerCase()] = x[2] !== undefined ? x[2].replace(/\\(.)/g, '$1') : x[3]!;
  return { scheme: m[1]!.toLowerCase(), params };
}

export interface ClientOptions {
  /**
   * registries reached over plain http: host[:port] or a CIDR (daemon.json's
   * "insecure-registries"); loopback is always among them, as docker's default
   */
  insecure?: string[];
  /** daemon.json's "registry-mirrors": base URLs tried in order for Docker Hub images */
  mirrors?: string[];
  /** the config file the mirrors and insecure registries came from (named in errors) */
  configPath?: string;
  credentials?: Credentials;
  /** ms without progress before a request is abandoned */
  timeout?: number;
}

/** The endpoint a client talks to: the image's registry, or a mirror of Docker Hub. */
export interface Endpoint {
  /** scheme://host[:port] */
  base: string;
  /** set for a registry mirror: its URL as configured */
  mirror?: string;
}

// Docker marks 127.0.0.0/8 and ::1 insecure by default (registry.ServiceOptions): a registry
// on loopback does not leave the host, so plain http there exposes nothing on the wire.
// Made when first needed: a BlockList is a native object, which the start-up snapshot
// (scripts/bundle.mjs) cannot hold.
let loopback: BlockList | undefined;
const LOOPBACK = (): BlockList => {
  if (!loopback) {
    loopback = new BlockList();
    loopback.addSubnet('127.0.0.0', 8, 'ipv4');
    loopback.addAddress('::1', 'ipv6');
  }
  return loopback;
};

/** host[:port] or [v6]:port → the host part without brackets */
export function hostOf(hostport: string): string {
  const m = /^\[([^\]]+)\](?::\d+)?$/.exec(hostport);
  if (m) return m[1]!;
  const i = hostport.lastIndexOf(':');
  return i > 0 && hostport.indexOf(':') === i ? hostport.slice(0, i) : hostport;
}

/**
 * Whether a registry (host[:port]) is reached over plain http: loopback always; else when
 * it, its host name, or a CIDR containing its address is in `list` (docker's meaning of
 * "insecure-registries", without its DNS lookup of names: only literal addresses match a CIDR).
 */
export function isInsecure(registry: string, list: string[] = []): boolean {
  const host = hostOf(registry);
  const fam = isIP(host);
  if (host === 'localhost' || (fam && LOOPBACK().check(host, fam === 4 ? 'ipv4' : 'ipv6'))) return true;
  for (const e of list) {
    if (e === registry || e === host) return true;
    const c = /^(.+)\/(\d{1,3})$/.exec(e);
    if (c && fam && isIP(c[1]!) === fam) {
      const b = new BlockList();
      b.addSubnet(c[1]!, Number(c[2]), fam === 4 ? 'ipv4' : 'ipv6');
      if (b.check(host, fam === 4 ? 'ipv4' : 'ipv6')) return true;
    }
  }
  return false;
}

/** The endpoints a pull tries in order: Docker Hub's mirrors first, then the registry itself. */
export function endpointsFor(ref: Reference, opts: ClientOptions = {}): Endpoint[] {
  const own: Endpoint = { base: `${isInsecure(ref.registry, opts.insecure) ? 'http' : 'https'}://${registryHost(ref.registry)}` };
  // docker applies registry-mirrors to Docker Hub only
  if (ref.registry !== 'docker.io') return [own];
  return [...(opts.mirrors ?? []).map((m) => ({ base: new URL(m).origin, mirror: m })), own];
}

/** What the client needs of an HTTP answer. */
export interface Reply {
  status: number;
  ok: boolean;
  header(name: string): string | null;
  /** the body, chunk by chunk; null when there is none */
  body: AsyncIterable<Uint8Array> | null;
  /** reads the body whole (error documents, manifests, tokens), or its first 4 MiB and a byte */
  bytes(): Promise<Buffer>;
  /** drops the body unread */
  discard(): Promise<void>;
}

/** GET over node:http(s): the socket is paused while the body's reader is behind. */
function httpGet(url: string, headers: Record<string, string>, signal?: AbortSignal): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const get = url.startsWith('https:') ? https().get : http().get;
    const req = get(url, { headers, ...(signal ? { signal } : {}) }, (msg) => {
      const status = msg.statusCode ?? 0;
      resolve({
        status,
        ok: status >= 200 && status < 300,
        header: (n) => {
          const v = msg.headers[n.toLowerCase()];
          return v === undefined ? null : Array.isArray(v) ? v.join(', ') : v;
        },
        body: msg,
        bytes: async () => {
          const parts: Buffer[] = [];
          let n = 0;
          for await (const b of msg as AsyncIterable<Buffer>) {
            parts.push(b);
            n += b.length;
            // never a blob: what is longer is refused by its reader (manifest: "larger than 4 MiB")
            if (n > 4 << 20) {
              msg.destroy();
              break;
            }
          }
          return Buffer.concat(parts);
        },
        discard: async () => void msg.destroy(),
      });
    });
    req.on('error', reject);
  });
}

export class RegistryClient {
  private token?: string;
  private basic?: string;
  readonly base: string;
  constructor(
    readonly ref: Reference,
    readonly opts: ClientOptions = {},
    readonly endpoint: Endpoint = endpointsFor(ref, opts).at(-1)!,
  ) {
    this.base = endpoint.base;
    const c = opts.credentials;
    if (c?.bearer) this.token = c.bearer;
    if (c?.username !== undefined) this.basic = `Basic ${Buffer.from(`${c.username}:${c.password ?? ''}`).toString('base64')}`;
  }

  private where(): string {
    return `${this.ref.registry}/${this.ref.repository}${this.endpoint.mirror ? ` (mirror ${this.endpoint.mirror})` : ''}`;
  }

  /**
   * OpenSSL's "wrong version number" is what an https request gets from a server that
   * speaks plain http: say so, and name the setting that would use http instead.
   */
  private tlsHint(url: string, code: string | undefined): string | undefined {
    if (code !== 'ERR_SSL_WRONG_VERSION_NUMBER' && code !== 'ERR_SSL_PACKET_LENGTH_TOO_LONG') return undefined;
    const u = new URL(url);
    const file = this.opts.configPath ?? '/etc/tsrun/config.json';
    const fix = this.endpoint.mirror
      ? `if it is a plain-http mirror, write it as "http://${u.host}" in "registry-mirrors" of ${file}`
      : `if it is a plain-http registry, pass --insecure-registry ${u.host} or add "${u.host}" to "insecure-registries" in ${file}`;
    return `${u.host} answered an https request in plain http (TLS handshake failed: ${code}): ${fix}`;
  }

  /** One request with auth and manual redirects; a 401 triggers the token dance once. */
  async request(path: string, headers: Record<string, string> = {}, signal?: AbortSignal): Promise<Reply> {
    let authTried = false;
    for (;;) {
      const auth = this.token ? `Bearer ${this.token}` : this.basic;
      const res = await this.fetchFollow(`${this.base}${path}`, { ...headers, ...(auth ? { authorization: auth } : {}) }, signal);
      if (res.status !== 401 || authTried) return res;
      authTried = true;
      const ch = parseChallenge(res.header('www-authenticate') ?? '');
      await res.discard();
      if (ch.scheme === 'bearer') await this.fetchToken(ch.params);
      else if (ch.scheme === 'basic') {
        if (!this.basic) throw new RegistryError(`${this.where()}: the registry wants a user name and password (basic auth); tsrun login --username USER --password-stdin REGISTRY`);
        return res;
      } else return res;
    }
  }

  /** One GET, redirects followed by hand; `bare`: a failure to connect is thrown as it is. */
  private async fetchFollow(url: string, headers: Record<string, string>, signal?: AbortSignal, bare = false): Promise<Reply> {
    const origin = new URL(url).origin;
    for (let hops = 0; hops < 6; hops++) {
      let res: Reply;
      try {
        res = await httpGet(url, headers, signal);
      } catch (e) {
        if (bare) throw e;
        const c = e as { code?: string; message?: string; reason?: string };
        // node:https reports a failed handshake as EPROTO, OpenSSL's reason in the message
        // ("…:SSL routines:ssl3_get_record:wrong version number:…"): named as OpenSSL's code,
        // as fetch did (ERR_SSL_WRONG_VERSION_NUMBER)
        const reason = c.reason ?? /SSL routines:[^:]*:([a-z0-9 ]+):/i.exec(c.message ?? '')?.[1];
        const ssl = c.code === 'EPROTO' && reason ? `ERR_SSL_${reason.toUpperCase().replace(/[^A-Z0-9]+/g, '_')}` : c.code;
        const hint = this.tlsHint(url, ssl);
        if (hint) throw new RegistryError(`${this.where()}: ${hint}`, { cause: e });
        const why = c?.message ?? (e as Error).message;
        // offline machines (a workshop room, CI): say how to bring the image in without a registry
        throw new RegistryError(
          `${this.where()}: cannot reach ${new URL(url).host}: ${c?.code && !why.includes(c.code) ? `${c.code} ` : ''}${why}; ` +
            'offline? load the image from a file instead: tsrun import FILE [NAME] (a docker save or OCI archive, an OCI layout or a rootfs tarball/directory)',
          { cause: e },
        );
      }
      if (res.status >= 300 && res.status < 400 && res.header('location')) {
        await res.discard();
        const next = new URL(res.header('location')!, url);
        if (next.origin !== origin) delete headers.authorization;
        url = next.toString();
        continue;
      }
      return res;
    }
    throw new RegistryError(`${this.where()}: too many redirects`);
  }

  private async fetchToken(p: Record<string, string>, forLogin = false): Promise<void> {
    if (!p.realm) throw new RegistryError(`${this.where()}: Bearer challenge without a realm`);
    const u = new URL(p.realm);
    if (p.service) u.searchParams.set('service', p.service);
    // a login asks for no scope: the token server only checks who is asking
    if (!forLogin) u.searchParams.set('scope', p.scope ?? `repository:${this.ref.repository}:pull`);
    const headers: Record<string, string> = this.basic ? { authorization: this.basic } : {};
    let res: Reply;
    let body: Buffer;
    try {
      res = await this.fetchFollow(u.toString(), headers, AbortSignal.timeout(this.opts.timeout ?? 30_000), true);
      body = await res.bytes();
    } catch (e) {
      throw new RegistryError(`${this.where()}: token server ${u.host} unreachable: ${(e as Error).message}`, { cause: e });
    }
    if (!res.ok) throw new RegistryError(`${this.where()}: token server ${u.host} refused: HTTP ${res.status} ${body.toString('utf8').trim().slice(0, 200)}`);
    let j: { token?: string; access_token?: string };
    try {
      j = JSON.parse(body.toString('utf8')) as typeof j;
    } catch {
      throw new RegistryError(`${this.where()}: token server ${u.host} answered with something other than JSON`);
    }
    const t = j.token ?? j.access_token;
    if (!t) throw new RegistryError(`${this.where()}: token server ${u.host} answered without a token`);
    this.token = t;
  }

  /**
   * `docker login`'s check: GET /v2/; a Bearer challenge is answered by the token server
   * with these credentials, a Basic one by the registry. Throws when they are refused.
   */
  async checkLogin(): Promise<void> {
    const signal = AbortSignal.timeout(this.opts.timeout ?? 30_000);
    let res = await this.fetchFollow(`${this.base}/v2/`, {}, signal);
    if (res.status === 401) {
      const ch = parseChallenge(res.header('www-authenticate') ?? '');
      await res.discard();
      if (ch.scheme === 'bearer') {
        await this.fetchToken(ch.params, true);
        res = await this.fetchFollow(`${this.base}/v2/`, { authorization: `Bearer ${this.token}` }, signal);
      } else if (ch.scheme === 'basic' && this.basic) res = await this.fetchFollow(`${this.base}/v2/`, { authorization: this.basic }, signal);
    }
    await res.discard();
    if (!res.ok) throw new RegistryError(`${this.ref.registry}: login refused: HTTP ${res.status}`);
  }

  private async fail(res: Reply, what: string): Promise<never> {
    let detail = '';
    try {
      const j = JSON.parse((await res.bytes()).toString('utf8')) as { errors?: { code?: string; message?: string }[] };
      detail = (j.errors ?? []).map((e) => `${e.code ?? ''}: ${e.message ?? ''}`).join('; ');
    } catch {
      /* not JSON */
    }
    if (res.status === 401) throw new RegistryError(`${this.where()}: ${what}: unauthorized (HTTP 401)${detail ? ` ${detail}` : ''}; for a private image, tsrun login first`);
    throw new RegistryError(`${this.where()}: ${what}: HTTP ${res.status}${detail ? ` ${detail}` : ''}`);
  }

  /** Fetches a manifest or index by tag or digest; verifies it when the digest is known. */
  async manifest(reference: string, expect?: Descriptor): Promise<{ bytes: Buffer; mediaType: string; digest: string }> {
    const res = await this.request(`/v2/${this.ref.repository}/manifests/${reference}`, { accept: MANIFEST_ACCEPT }, AbortSignal.timeout(this.opts.timeout ?? 30_000));
    if (!res.ok) await this.fail(res, `manifest ${reference}`);
    const bytes = await res.bytes();
    if (bytes.length > 4 << 20) throw new RegistryError(`${this.where()}: manifest ${reference} is larger than 4 MiB: refused`);
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    const want = expect?.digest ?? (reference.startsWith('sha256:') ? reference : undefined);
    if (want && digest !== want) throw new RegistryError(`${this.where()}: manifest ${reference}: content has digest ${digest}, expected ${want}: refused`);
    if (expect && bytes.length !== expect.size) throw new RegistryError(`${this.where()}: manifest ${reference}: ${bytes.length} bytes, the index says ${expect.size}: refused`);
    let mediaType = (res.header('content-type') ?? '').split(';')[0]!.trim();
    try {
      const j = JSON.parse(bytes.toString('utf8')) as { mediaType?: string; schemaVersion?: number; manifests?: unknown };
      if (j.schemaVersion === 1) throw new UnsupportedError(`${this.where()}: manifest ${reference} is Docker schema 1 (deprecated since 2019): not supported; push it again with a current client`);
      if (j.mediaType) mediaType = j.mediaType;
      else if (!mediaType || mediaType === 'application/json') mediaType = j.manifests ? MEDIA.ociIndex : MEDIA.ociManifest;
    } catch (e) {
      if (e instanceof TsrunError) throw e;
      throw new RegistryError(`${this.where()}: manifest ${reference} is not JSON`);
    }
    return { bytes, mediaType, digest };
  }

  /**
   * Streams a blob to `file`, hashing as it goes; the digest and size must match the
   * descriptor or the file is removed and the pull fails. `progress` gets bytes so far.
   */
  async blob(d: Descriptor, file: string, progress?: (n: number) => void): Promise<void> {
    const ac = new AbortController();
    const idle = this.opts.timeout ?? 30_000;
    let timer = setTimeout(() => ac.abort(), idle);
    const fd = openSync(file, 'wx', 0o600);
    let ok = false;
    try {
      const res = await this.request(`/v2/${this.ref.repository}/blobs/${d.digest}`, {}, ac.signal);
      if (!res.ok || !res.body) await this.fail(res, `blob ${d.digest}`);
      const hash = createHash('sha256');
      let n = 0;
      try {
        for await (const chunk of res.body!) {
          clearTimeout(timer);
          timer = setTimeout(() => ac.abort(), idle);
          n += chunk.length;
          if (n > d.size) throw new RegistryError(`${this.where()}: blob ${d.digest}: more than the ${d.size} bytes the manifest says: refused`);
          hash.update(chunk);
          writeSync(fd, chunk);
          paced(chunk.length);
          progress?.(n);
        }
      } catch (e) {
        if (e instanceof TsrunError) throw e;
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOSPC' || code === 'EDQUOT') throw new RegistryError(`${this.where()}: blob ${d.digest}: ${code} writing ${file}: the disk is full; the partial blob was removed`, { cause: e });
        throw new RegistryError(`${this.where()}: blob ${d.digest}: download interrupted after ${n} of ${d.size} bytes (${ac.signal.aborted ? `no data for ${idle / 1000} s` : ((e as { cause?: Error }).cause?.message ?? (e as Error).message)}); the partial blob was removed, pull again to retry`, { cause: e });
      }
      if (n !== d.size) throw new RegistryError(`${this.where()}: blob ${d.digest}: got ${n} bytes, the manifest says ${d.size}${n < d.size ? ' (download interrupted); pull again to retry' : ''}: refused`);
      const got = `sha256:${hash.digest('hex')}`;
      if (got !== d.digest) throw new RegistryError(`${this.where()}: blob ${d.digest}: content has digest ${got}: refused, nothing stored`);
      ok = true;
    } finally {
      clearTimeout(timer);
      closeSync(fd);
      if (!ok) rmSync(file, { force: true });
    }
  }
}
