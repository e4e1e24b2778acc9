import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash, createSign, randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { MEDIA } from '../../src/image/store.js';
import { tarHeader, writeTarOfDir } from '../../src/image/tar.js';
import type { ImageConfig } from '../../src/image/types.js';

// Test helpers: Debian's docker-registry (distribution 2.8) on a free 127.0.0.1 port with
// its own config and storage dir, a small token server (JWT signed with a throw-away key,
// its certificate in the JWT's x5c header, as distribution's token auth verifies it), OCI
// layouts built here and pushed with skopeo, and tar builders for hostile layers.
// Everything listens on loopback only and is stopped by the pid it started.

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export interface Registry {
  host: string;
  port: number;
  storage: string;
  dir: string;
  stop(): Promise<void>;
  /** the on-disk file of a blob (to corrupt it) */
  blobFile(digest: string): string;
}

export interface TokenAuth {
  realm: string;
  service: string;
  issuer: string;
  cert: string;
}

async function waitHttp(url: string, ms: number, proc: ChildProcess, log: () => string): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`docker-registry exited (${proc.exitCode}): ${log()}`);
    try {
      const r = await fetch(url);
      await r.body?.cancel();
      return;
    } catch {
      if (Date.now() > end) throw new Error(`docker-registry did not answer on ${url} in ${ms} ms: ${log()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

export async function startRegistry(auth?: TokenAuth): Promise<Registry> {
  const dir = mkdtempSync(join(tmpdir(), 'tsrun-registry-'));
  const storage = join(dir, 'storage');
  mkdirSync(storage);
  const port = await freePort();
  const lines = [
    'version: 0.1',
    'log:',
    '  level: warn',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${storage}`,
    '  delete:',
    '    enabled: true',
    'http:',
    `  addr: 127.0.0.1:${port}`,
  ];
  if (auth)
    lines.push('auth:', '  token:', `    realm: ${auth.realm}`, `    service: ${auth.service}`, `    issuer: ${auth.issuer}`, `    rootcertbundle: ${auth.cert}`);
  writeFileSync(join(dir, 'config.yml'), lines.join('\n') + '\n');
  const logFile = join(dir, 'registry.log');
  const fd = openSync(logFile, 'w');
  const proc = spawn('docker-registry', ['serve', join(dir, 'config.yml')], { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  const log = () => readFileSync(logFile, 'utf8').slice(-2000);
  await waitHttp(`http://127.0.0.1:${port}/v2/`, 15_000, proc, log);
  return {
    host: `127.0.0.1:${port}`,
    port,
    storage,
    dir,
    blobFile: (digest) => join(storage, 'docker', 'registry', 'v2', 'blobs', 'sha256', digest.slice(7, 9), digest.slice(7), 'data'),
    async stop() {
      if (proc.exitCode === null) {
        const gone = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGTERM');
        await Promise.race([gone, new Promise((r) => setTimeout(r, 3000))]);
        if (proc.exitCode === null) proc.kill('SIGKILL');
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const b64url = (b: Buffer | string) => Buffer.from(b).toString('base64url');

export interface TokenServer {
  url: string;
  auth: TokenAuth;
  /** the requests it saw: scope and whether they carried credentials */
  seen: { scope: string; user?: string }[];
  stop(): Promise<void>;
}

/** Grants tokens to `user:password` only (anonymous requests get 401). */
export async function startTokenServer(user: string, password: string): Promise<TokenServer> {
  const dir = mkdtempSync(join(tmpdir(), 'tsrun-token-'));
  const key = join(dir, 'key.pem');
  const cert = join(dir, 'cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=tsrun-test-token'], { stdio: 'ignore' });
  const der = Buffer.from(readFileSync(cert, 'utf8').replace(/-----[^-]+-----|\s/g, ''), 'base64');
  const keyPem = readFileSync(key, 'utf8');
  const port = await freePort();
  const service = 'tsrun-test-registry';
  const issuer = 'tsrun-test-issuer';
  const seen: TokenServer['seen'] = [];
  const server = http.createServer((req, res) => {
    const u = new URL(req.url ?? '/', `http://127.0.0.1:${port}`);
    const scope = u.searchParams.get('scope') ?? '';
    const h = req.headers.authorization ?? '';
    const creds = h.startsWith('Basic ') ? Buffer.from(h.slice(6), 'base64').toString('utf8') : undefined;
    seen.push({ scope, ...(creds ? { user: creds.split(':')[0] } : {}) });
    if (creds !== `${user}:${password}`) {
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'bad or missing credentials' }] }));
      return;
    }
    const access = scope
      .split(' ')
      .filter(Boolean)
      .map((s) => {
        const [type, name, actions] = s.split(':');
        return { type, name, actions: (actions ?? '').split(',') };
      });
    const now = Math.floor(Date.now() / 1000);
    const header = { typ: 'JWT', alg: 'RS256', x5c: [der.toString('base64')] };
    const claims = { iss: issuer, sub: user, aud: service, exp: now + 300, nbf: now - 10, iat: now, jti: randomBytes(8).toString('hex'), access };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const sig = createSign('RSA-SHA256').update(input).sign(keyPem);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ token: `${input}.${b64url(sig)}`, expires_in: 300 }));
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${port}/token`,
    auth: { realm: `http://127.0.0.1:${port}/token`, service, issuer, cert },
    seen,
    async stop() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// ---- images built here ----

export interface BuiltLayer {
  blob: Buffer;
  digest: string;
  diffId: string;
}

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

export function layerFromTar(tar: Buffer, gzip = true, level = 6): BuiltLayer {
  const blob = gzip ? gzipSync(tar, { level }) : tar;
  return { blob, digest: sha(blob), diffId: sha(tar) };
}

/** A layer from a directory tree (tarred by tsrun's own writer). */
export function layerFromDir(dir: string, gzip = true, level = 6): BuiltLayer {
  const f = join(mkdtempSync(join(tmpdir(), 'tsrun-layer-')), 'l.tar');
  const fd = openSync(f, 'w');
  writeTarOfDir(dir, fd);
  closeSync(fd);
  const tar = readFileSync(f);
  rmSync(join(f, '..'), { recursive: true, force: true });
  return layerFromTar(tar, gzip, level);
}

/**
 * The benchmark's layer (bench/pull.ts, issue 7): `mb` MB, half one file of random bytes
 * (binaries: nothing compresses), half small text files of 4.4 kB (sources: ~2,300 per
 * 10 MB), gzipped at level 1. Five of them are "the 106 MB image" of issue 16.3.
 */
export function benchLayer(root: string, i: number, mb: number): BuiltLayer {
  const dir = join(root, `layer${i}`);
  mkdirSync(join(dir, `opt/l${i}/bin`), { recursive: true });
  writeFileSync(join(dir, `opt/l${i}/bin/blob`), randomBytes((mb / 2) * 1e6));
  const text = 'the quick brown fox jumps over the lazy dog\n'.repeat(100);
  const files = Math.round(((mb / 2) * 1e6) / text.length);
  for (let d = 0; d * 100 < files; d++) {
    mkdirSync(join(dir, `opt/l${i}/src/d${d}`), { recursive: true });
    for (let f = d * 100; f < Math.min(files, (d + 1) * 100); f++) writeFileSync(join(dir, `opt/l${i}/src/d${d}/f${f}.txt`), `${f}\n${text}`);
  }
  const layer = layerFromDir(dir, true, 1);
  rmSync(dir, { recursive: true, force: true });
  return layer;
}

export interface RawEntry {
  name: string;
  type?: 'file' | 'dir' | 'symlink' | 'hardlink' | 'char' | 'fifo';
  body?: string | Buffer;
  linkname?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  xattrs?: Record<string, string | Buffer>;
}

/** A tar made entry by entry: how hostile layers are written. */
export function rawTar(entries: RawEntry[]): Buffer {
  const flags = { file: '0', hardlink: '1', symlink: '2', char: '3', dir: '5', fifo: '6' };
  const parts: Buffer[] = [];
  const pad = (b: Buffer) => Buffer.concat([b, Buffer.alloc((512 - (b.length % 512)) % 512)]);
  for (const e of entries) {
    const body = Buffer.from(e.body ?? '');
    const recs: string[] = [];
    const pax = (k: string, v: string) => {
      const kv = ` ${k}=${v}\n`;
      let len = Buffer.byteLength(kv) + 1;
      while (String(len).length + Buffer.byteLength(kv) !== len) len = String(len).length + Buffer.byteLength(kv);
      recs.push(`${len}${kv}`);
    };
    for (const [k, v] of Object.entries(e.xattrs ?? {})) pax(`SCHILY.xattr.${k}`, Buffer.from(v).toString('latin1'));
    if (e.name.length > 99) pax('path', e.name);
    if (recs.length) {
      const pb = Buffer.from(recs.join(''), 'latin1');
      parts.push(tarHeader('PaxHeader', { mode: 0o644, uid: 0, gid: 0, size: pb.length, mtime: 0, flag: 'x', linkname: '' }), pad(pb));
    }
    const type = e.type ?? 'file';
    parts.push(tarHeader(e.name.slice(0, 100), { mode: e.mode ?? (type === 'dir' ? 0o755 : 0o644), uid: e.uid ?? 0, gid: e.gid ?? 0, size: type === 'file' ? body.length : 0, mtime: 1700000000, flag: flags[type], linkname: e.linkname ?? '' }));
    if (type === 'file' && body.length) parts.push(pad(body));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

export interface LayoutImage {
  layers: BuiltLayer[];
  config: ImageConfig;
  architecture?: string;
  variant?: string;
}

function writeBlob(layout: string, b: Buffer): { digest: string; size: number } {
  const digest = sha(b);
  writeFileSync(join(layout, 'blobs', 'sha256', digest.slice(7)), b);
  return { digest, size: b.length };
}

function manifestOf(layout: string, img: LayoutImage) {
  const cfg = Buffer.from(
    JSON.stringify({
      created: '2026-01-01T00:00:00Z',
      architecture: img.architecture ?? 'amd64',
      ...(img.variant ? { variant: img.variant } : {}),
      os: 'linux',
      config: img.config,
      rootfs: { type: 'layers', diff_ids: img.layers.map((l) => l.diffId) },
    }),
  );
  const c = writeBlob(layout, cfg);
  for (const l of img.layers) writeBlob(layout, l.blob);
  const m = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA.ociManifest,
      config: { mediaType: MEDIA.ociConfig, ...c },
      layers: img.layers.map((l) => ({ mediaType: l.blob[0] === 0x1f ? MEDIA.ociLayerGzip : MEDIA.ociLayer, digest: l.digest, size: l.blob.length })),
    }),
  );
  return { ...writeBlob(layout, m), mediaType: MEDIA.ociManifest, platform: { os: 'linux', architecture: img.architecture ?? 'amd64', ...(img.variant ? { variant: img.variant } : {}) } };
}

/**
 * Writes an OCI image layout with one image, or (several images) an image index, tagged
 * `tag`; returns the top manifest or index digest.
 */
export function writeLayout(layout: string, tag: string, images: LayoutImage[]): string {
  mkdirSync(join(layout, 'blobs', 'sha256'), { recursive: true });
  writeFileSync(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  let top;
  if (images.length === 1) {
    const { platform: _p, ...d } = manifestOf(layout, images[0]!);
    top = d;
  } else {
    const ms = images.map((i) => manifestOf(layout, i));
    const idx = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MEDIA.ociIndex, manifests: ms }));
    top = { ...writeBlob(layout, idx), mediaType: MEDIA.ociIndex };
  }
  writeFileSync(join(layout, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ ...top, annotations: { 'org.opencontainers.image.ref.name': tag } }] }));
  return top.digest;
}

/** The same push without blocking the event loop (the token server lives in this process). */
export function pushAsync(layout: string, tag: string, dest: string, opts: { all?: boolean; creds?: string } = {}): Promise<void> {
  return new Promise((resolve, reject) => {
    const args = ['copy', '--quiet', ...(opts.all ? ['--all'] : []), '--dest-tls-verify=false', ...(opts.creds ? ['--dest-creds', opts.creds] : []), `oci:${layout}:${tag}`, `docker://${dest}`];
    execFile('skopeo', args, { timeout: 60_000 }, (err, _o, stderr) => (err ? reject(new Error(`skopeo ${args.join(' ')}: ${stderr}`)) : resolve()));
  });
}

/** Pushes a layout to the registry with skopeo (an index with --all). */
export function push(layout: string, tag: string, dest: string, opts: { all?: boolean; creds?: string } = {}): void {
  execFileSync('skopeo', ['copy', '--quiet', ...(opts.all ? ['--all'] : []), '--dest-tls-verify=false', ...(opts.creds ? ['--dest-creds', opts.creds] : []), `oci:${layout}:${tag}`, `docker://${dest}`], {
    stdio: ['ignore', 'ignore', 'pipe'],
    timeout: 60_000,
  });
}
