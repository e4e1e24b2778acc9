// Pure parts of the image code: references, tar headers, registry auth parsing, platform
// choice, docker import's --change, and the registry client against a fake loopback server.
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { applyChange } from '../../src/image/import.js';
import { parsePullPolicy, progressReporter } from '../../src/image/pull.js';
import { pickPlatform } from '../../src/image/platform.js';
import { canonicalName, familiarName, parseReference } from '../../src/image/reference.js';
import { dockerCredentials, endpointsFor, isInsecure, parseChallenge, RegistryClient } from '../../src/image/registry.js';
import { ContentStore, MEDIA } from '../../src/image/store.js';
import { ChunkReader, readTar, tarHeader, paxRecord, TarError, writeTarOfDir } from '../../src/image/tar.js';
import { LayerError, safeRelPath, unpackLayer } from '../../src/image/unpack.js';
import type { Kernel } from '../../src/kernel/types.js';

describe('image references', () => {
  const cases: [string, string, string][] = [
    ['busybox', 'docker.io/library/busybox:latest', 'busybox:latest'],
    ['alpine:3.20', 'docker.io/library/alpine:3.20', 'alpine:3.20'],
    ['user/app', 'docker.io/user/app:latest', 'user/app:latest'],
    ['docker.io/library/alpine', 'docker.io/library/alpine:latest', 'alpine:latest'],
    ['index.docker.io/library/alpine:1', 'docker.io/library/alpine:1', 'alpine:1'],
    ['localhost/app', 'localhost/app:latest', 'localhost/app:latest'],
    ['localhost:5000/a/b/c:v1.2-x_y', 'localhost:5000/a/b/c:v1.2-x_y', 'localhost:5000/a/b/c:v1.2-x_y'],
    ['127.0.0.1:5000/app', '127.0.0.1:5000/app:latest', '127.0.0.1:5000/app:latest'],
    ['ghcr.io/o/r@sha256:' + 'a'.repeat(64), 'ghcr.io/o/r@sha256:' + 'a'.repeat(64), 'ghcr.io/o/r@sha256:' + 'a'.repeat(64)],
    ['alpine:3@sha256:' + 'b'.repeat(64), 'docker.io/library/alpine:3@sha256:' + 'b'.repeat(64), 'alpine:3@sha256:' + 'b'.repeat(64)],
    ['my-app__x.y', 'docker.io/library/my-app__x.y:latest', 'my-app__x.y:latest'],
  ];
  for (const [input, canon, familiar] of cases)
    it(`${input} → ${canon}`, () => {
      const r = parseReference(input);
      expect(canonicalName(r)).toBe(canon);
      expect(familiarName(r)).toBe(familiar);
    });

  const bad: [string, RegExp][] = [
    ['', /empty/],
    ['Alpine', /repository names must be lowercase/],
    ['alpine:', /tag ""/],
    ['alpine:-x', /tag "-x"/],
    ['alpine@sha256:123', /digest "sha256:123" is not sha256:<64 hex digits>/],
    ['a//b', /empty path component/],
    ['-a', /path component "-a"/],
    ['a..b', /path component "a..b"/],
    ['bad_host:5000:x/app', /tag|registry|path component/],
  ];
  for (const [input, msg] of bad)
    it(`refuses ${JSON.stringify(input)}`, () => {
      expect(() => parseReference(input)).toThrow(msg);
      expect(() => parseReference(input)).toThrow(/^invalid image reference /);
    });
});

describe('tar reading', () => {
  async function entries(tar: Buffer) {
    const out = [];
    for await (const e of readTar(new ChunkReader((async function* () {
      // odd chunk sizes: headers and bodies straddle chunks
      for (let i = 0; i < tar.length; i += 333) yield tar.subarray(i, i + 333);
    })()))) {
      let body = '';
      if (e.type === 'file') for await (const b of e.body()) body += b.toString();
      out.push({ name: e.name, type: e.type, size: e.size, linkname: e.linkname, uid: e.uid, mode: e.mode, body, xattrs: Object.keys(e.xattrs) });
    }
    return out;
  }
  const end = Buffer.alloc(1024);
  const pad = (b: Buffer) => Buffer.concat([b, Buffer.alloc((512 - (b.length % 512)) % 512)]);
  const h = (name: string, flag: string, size = 0, linkname = '') => tarHeader(name, { mode: 0o644, uid: 7, gid: 7, size, mtime: 1, flag, linkname });

  it('reads ustar entries, pax paths and xattrs, GNU long names', async () => {
    const long = 'x/'.repeat(80) + 'file';
    const pax = Buffer.concat([paxRecord('path', Buffer.from(long)), paxRecord('SCHILY.xattr.security.capability', Buffer.from([1, 0, 0, 2]))]);
    const gnu = Buffer.from('gnu/' + 'y'.repeat(150) + '\0');
    const tar = Buffer.concat([
      h('a.txt', '0', 5),
      pad(Buffer.from('hello')),
      h('PaxHeader', 'x', pax.length),
      pad(pax),
      h('short', '0', 2),
      pad(Buffer.from('hi')),
      h('././@LongLink', 'L', gnu.length),
      pad(gnu),
      h('trunc', '2', 0, 'target'),
      h('d/', '5'),
      end,
    ]);
    const es = await entries(tar);
    expect(es.map((e) => [e.name, e.type, e.body, e.linkname])).toEqual([
      ['a.txt', 'file', 'hello', ''],
      [long, 'file', 'hi', ''],
      ['gnu/' + 'y'.repeat(150), 'symlink', '', 'target'],
      ['d/', 'dir', '', ''],
    ]);
    expect(es[1]!.xattrs).toEqual(['security.capability']);
    expect(es[0]!.uid).toBe(7);
  });

  it('reads base-256 numbers (GNU) for large ids', async () => {
    const hd = h('big', '0', 0);
    hd.fill(0, 108, 116);
    hd[108] = 0x80;
    hd.writeUInt32BE(3_000_000_000, 112);
    hd.fill(0x20, 148, 156);
    let sum = 0;
    for (const b of hd) sum += b;
    hd.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
    expect((await entries(Buffer.concat([hd, end])))[0]!.uid).toBe(3_000_000_000);
  });

  it('refuses bad checksums, truncation, unknown types', async () => {
    const bad = Buffer.concat([h('a', '0'), end]);
    bad[0] = 0x62;
    await expect(entries(bad)).rejects.toThrow(/checksum mismatch/);
    await expect(entries(Buffer.concat([h('a', '0', 1000), Buffer.alloc(512)]))).rejects.toThrow(/truncated/);
    await expect(entries(h('a', '0'))).rejects.toThrow(/without its end-of-archive/);
  });

  it('refuses a pax size that is not a decimal number instead of reading the body as a header', async () => {
    // size=abc became NaN: the reader then took the entry's body for the next header, so a
    // tar could carry a "smuggled" entry that another reader sees as file content
    const smuggled = h('smuggled', '0', 0);
    const pax = paxRecord('size', Buffer.from('abc'));
    const tar = Buffer.concat([h('PaxHeader', 'x', pax.length), pad(pax), h('a', '0', 512), smuggled, end]);
    await expect(entries(tar)).rejects.toThrow(/^entry "a": pax record size="abc" is not a decimal number$/);
    for (const [k, v] of [['size', '-1'], ['size', '1e3'], ['uid', '0x10'], ['gid', ''], ['mtime', 'now']] as const) {
      const p = paxRecord(k, Buffer.from(v));
      await expect(entries(Buffer.concat([h('PaxHeader', 'x', p.length), pad(p), h('b', '0'), end]))).rejects.toThrow(`entry "b": pax record ${k}="${v}" is not a`);
    }
    // fractional mtimes are pax's own format and stay accepted
    const ok = paxRecord('mtime', Buffer.from('1700000000.123456789'));
    expect((await entries(Buffer.concat([h('PaxHeader', 'x', ok.length), pad(ok), h('c', '0'), end])))[0]!.name).toBe('c');
  });

  it('refuses malformed pax records rather than guessing', async () => {
    const bad = (body: string) => Buffer.concat([h('PaxHeader', 'x', Buffer.byteLength(body)), pad(Buffer.from(body)), h('f', '0'), end]);
    await expect(entries(bad('12abc path=x\n'))).rejects.toThrow(/malformed pax extended header: record length "12abc"/);
    await expect(entries(bad('8 pathx\n'))).rejects.toThrow(/malformed pax extended header: record "pathx" has no '='/);
    await expect(entries(bad('10 path=xy'))).rejects.toThrow(/malformed pax extended header: record does not end in a newline/);
    await expect(entries(bad('11 path=x\ntrailing'))).rejects.toThrow(/malformed pax extended header/);
  });

  it('refuses GNU sparse files, old (type S) and pax (GNU.sparse.*), naming the entry', async () => {
    await expect(entries(Buffer.concat([h('sparse', 'S'), end]))).rejects.toThrow(/^entry "sparse": GNU sparse file \(type "S"\): not supported, store the file whole$/);
    // PAX sparse 1.0 (GNU tar --sparse --format=pax): the body starts with the sparse map,
    // which a reader that ignores GNU.sparse.* would write out as the file's content
    const pax = Buffer.concat([paxRecord('GNU.sparse.major', Buffer.from('1')), paxRecord('GNU.sparse.minor', Buffer.from('0')), paxRecord('GNU.sparse.name', Buffer.from('big')), paxRecord('GNU.sparse.realsize', Buffer.from('1048576'))]);
    const map = pad(Buffer.from('1\n0\n5\n'));
    const tar = Buffer.concat([h('PaxHeader', 'x', pax.length), pad(pax), h('./GNUSparseFile.0/big', '0', 512 + 5), map, pad(Buffer.from('hello')), end]);
    await expect(entries(tar)).rejects.toThrow(/^entry "big": GNU sparse file \(pax GNU\.sparse\.major\): not supported, store the file whole$/);
  });

  it('entry paths: relative, no "..", no absolute', () => {
    expect(safeRelPath('./a//b/./c/')).toBe('a/b/c');
    expect(safeRelPath('./')).toBe('');
    expect(() => safeRelPath('a/../../b')).toThrow(/'\.\.'/);
    expect(() => safeRelPath('/etc')).toThrow(/absolute/);
    expect(() => safeRelPath('a\0b')).toThrow(/NUL/);
  });
});

describe('layers through a fake kernel (the calls Node lacks are on the Kernel interface)', () => {
  /** an addon failure as native/addon.cc throws it: errno and syscall, strerror in the message */
  const addonError = (syscall: string, errno: number, text: string) => Object.assign(new Error(`${syscall}: ${text}`), { errno, syscall });
  const h = (name: string, flag: string) => tarHeader(name, { mode: 0o644, uid: 0, gid: 0, size: 0, mtime: 1, flag, linkname: '' });

  it('unpack makes whiteouts and opaque directories with mknod and lsetxattr, and names an errno the kernel returns', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsrun-unit-layer-'));
    try {
      const blob = join(dir, 'layer.tar');
      writeFileSync(blob, Buffer.concat([h('d/.wh..wh..opq', '0'), h('d/.wh.gone', '0'), Buffer.alloc(1024)]));
      const calls: string[] = [];
      const kernel = {
        mknod: (p: string, mode: number, major: number, minor: number) => void calls.push(`mknod ${p.slice(dir.length)} ${mode.toString(8)} ${major}:${minor}`),
        lsetxattr: (p: string, name: string, v: Uint8Array) => void calls.push(`lsetxattr ${p.slice(dir.length)} ${name}=${Buffer.from(v)}`),
      } as unknown as Kernel;
      mkdirSync(join(dir, 'out'));
      await unpackLayer(blob, join(dir, 'out'), 'l1', kernel);
      expect(calls).toEqual(['lsetxattr /out/d trusted.overlay.opaque=y', 'lsetxattr /out/d user.overlay.opaque=y', 'mknod /out/d/gone 20000 0:0']);

      const refusing = { mknod: (p: string) => { throw addonError(`mknod ${p}`, 17, 'File exists'); }, lsetxattr: () => {} } as unknown as Kernel;
      mkdirSync(join(dir, 'out2'));
      const r = unpackLayer(blob, join(dir, 'out2'), 'l2', refusing);
      await expect(r).rejects.toThrow(LayerError);
      await expect(r).rejects.toThrow(`layer l2: entry "d/.wh.gone" into ${join(dir, 'out2')}: EEXIST`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the rootfs writer takes xattrs from llistxattr/lgetxattr (never overlayfs\'s own) and names an errno the kernel returns', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsrun-unit-tar-'));
    try {
      mkdirSync(join(dir, 'root'));
      writeFileSync(join(dir, 'root', 'f'), 'x');
      const kernel = {
        llistxattr: (p: string) => (p.endsWith('/f') ? ['user.a', 'trusted.overlay.opaque', 'user.gone'] : []),
        lgetxattr: (_p: string, name: string) => (name === 'user.a' ? Buffer.from('v') : null),
      } as unknown as Kernel;
      const fd = openSync(join(dir, 'out.tar'), 'w');
      try {
        writeTarOfDir(join(dir, 'root'), fd, kernel);
      } finally {
        closeSync(fd);
      }
      const got: Record<string, string[]> = {};
      const tar = readFileSync(join(dir, 'out.tar'));
      for await (const e of readTar(new ChunkReader((async function* () { yield tar; })()))) {
        got[e.name] = Object.entries(e.xattrs).map(([k, v]) => `${k}=${v}`);
        if (e.type === 'file') for await (const _ of e.body());
      }
      expect(got['f']).toEqual(['user.a=v']);

      const denied = { llistxattr: (p: string) => { throw addonError(`llistxattr ${p}`, 13, 'Permission denied'); }, lgetxattr: () => null } as unknown as Kernel;
      const fd2 = openSync(join(dir, 'out2.tar'), 'w');
      try {
        expect(() => writeTarOfDir(join(dir, 'root'), fd2, denied)).toThrow(TarError);
        expect(() => writeTarOfDir(join(dir, 'root'), fd2, denied)).toThrow(new RegExp(`^${join(dir, 'root')}: EACCES$`));
      } finally {
        closeSync(fd2);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('registry auth and platforms', () => {
  it('parses WWW-Authenticate challenges', () => {
    expect(parseChallenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"')).toEqual({
      scheme: 'bearer',
      params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/alpine:pull' },
    });
    expect(parseChallenge('Basic realm="r, with comma"').params.realm).toBe('r, with comma');
  });

  it('reads credentials from $DOCKER_CONFIG/config.json', () => {
    const d = mkdtempSync(join(tmpdir(), 'tsrun-dc-'));
    try {
      writeFileSync(
        join(d, 'config.json'),
        JSON.stringify({ auths: { 'https://index.docker.io/v1/': { auth: Buffer.from('hub:pw').toString('base64') }, 'reg.example:5000': { registrytoken: 'tok' } } }),
      );
      expect(dockerCredentials('docker.io', { DOCKER_CONFIG: d })).toEqual({ username: 'hub', password: 'pw' });
      expect(dockerCredentials('reg.example:5000', { DOCKER_CONFIG: d })).toEqual({ bearer: 'tok' });
      expect(dockerCredentials('other.io', { DOCKER_CONFIG: d })).toBeUndefined();
      expect(dockerCredentials('x', { DOCKER_CONFIG: join(d, 'none') })).toBeUndefined();
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });

  it('picks linux/amd64 (or the host\'s) from an index', () => {
    const m = (architecture: string, variant?: string) => ({ mediaType: MEDIA.ociManifest, digest: `sha256:${architecture}${variant ?? ''}`, size: 1, platform: { os: 'linux', architecture, ...(variant ? { variant } : {}) } });
    const list = [m('arm', 'v7'), m('arm64', 'v8'), m('amd64'), { ...m('unknown'), platform: { os: 'unknown', architecture: 'unknown' } }];
    expect(pickPlatform(list, { os: 'linux', architecture: 'amd64' })?.digest).toBe('sha256:amd64');
    expect(pickPlatform(list, { os: 'linux', architecture: 'arm64', variant: 'v8' })?.digest).toBe('sha256:arm64v8');
    expect(pickPlatform(list, { os: 'linux', architecture: 's390x' })).toBeUndefined();
  });

  it('--pull and --change', () => {
    expect(parsePullPolicy(undefined)).toBe('missing');
    expect(() => parsePullPolicy('sometimes')).toThrow(/--pull "sometimes": one of missing, always, never/);
    expect(applyChange({}, 'CMD ["a","b"]')).toEqual({ Cmd: ['a', 'b'] });
    expect(applyChange({}, 'ENTRYPOINT echo hi')).toEqual({ Entrypoint: ['/bin/sh', '-c', 'echo hi'] });
    expect(applyChange({ Env: ['A=1'] }, 'ENV B 2')).toEqual({ Env: ['A=1', 'B=2'] });
    expect(() => applyChange({}, 'RUN x')).toThrow(/only CMD, ENTRYPOINT/);
  });
});

describe('registry client against a fake registry on 127.0.0.1', () => {
  async function fake(handler: http.RequestListener) {
    const server = http.createServer(handler);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    return { port, close: () => new Promise((r) => (server.closeAllConnections(), server.close(r))) };
  }
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MEDIA.ociManifest, config: { mediaType: MEDIA.ociConfig, digest: 'sha256:' + '0'.repeat(64), size: 2 }, layers: [] }));
  const mdigest = `sha256:${createHash('sha256').update(manifest).digest('hex')}`;

  it('anonymous bearer flow: 401 with a challenge, token from the realm, retry with it', async () => {
    const seen: string[] = [];
    const srv = await fake((req, res) => {
      seen.push(`${req.url} ${req.headers.authorization ?? '-'}`);
      if (req.url?.startsWith('/token')) return void res.end(JSON.stringify({ token: 'T1' }));
      if (req.headers.authorization !== 'Bearer T1') {
        res.writeHead(401, { 'www-authenticate': `Bearer realm="http://127.0.0.1:${srv.port}/token",service="fake",scope="repository:lib/x:pull"` });
        return void res.end();
      }
      res.writeHead(200, { 'content-type': MEDIA.ociManifest });
      res.end(manifest);
    });
    try {
      const c = new RegistryClient(parseReference(`127.0.0.1:${srv.port}/lib/x:1`), { insecure: [`127.0.0.1:${srv.port}`] });
      const m = await c.manifest('1');
      expect(m.digest).toBe(mdigest);
      expect(m.mediaType).toBe(MEDIA.ociManifest);
      expect(seen).toEqual(['/v2/lib/x/manifests/1 -', '/token?service=fake&scope=repository%3Alib%2Fx%3Apull -', '/v2/lib/x/manifests/1 Bearer T1']);
    } finally {
      await srv.close();
    }
  });

  it('a manifest whose content does not match the digest asked for is refused', async () => {
    const srv = await fake((_req, res) => res.end(manifest));
    try {
      const c = new RegistryClient(parseReference(`127.0.0.1:${srv.port}/x@sha256:${'1'.repeat(64)}`), { insecure: [`127.0.0.1:${srv.port}`] });
      await expect(c.manifest(`sha256:${'1'.repeat(64)}`)).rejects.toThrow(/content has digest sha256:[0-9a-f]{64}, expected sha256:1111/);
    } finally {
      await srv.close();
    }
  });

  it('blobs: digest and size checked; the partial file is removed; auth is not sent to another origin', async () => {
    const body = Buffer.from('layer bytes');
    const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`;
    const other = await fake((req, res) => res.end(req.headers.authorization ? 'LEAKED' : body));
    const srv = await fake((req, res) => {
      if (req.url?.includes('redirect')) {
        res.writeHead(307, { location: `http://localhost:${other.port}/blob` });
        return void res.end();
      }
      res.end(req.url?.includes('short') ? body.subarray(0, 3) : body);
    });
    const d = mkdtempSync(join(tmpdir(), 'tsrun-blob-'));
    try {
      const host = `127.0.0.1:${srv.port}`;
      const c = new RegistryClient(parseReference(`${host}/x:1`), { insecure: [host], credentials: { bearer: 'secret' } });
      await c.blob({ mediaType: MEDIA.ociLayerGzip, digest, size: body.length }, join(d, 'ok'));
      expect(readFileSync(join(d, 'ok'))).toEqual(body);
      await expect(c.blob({ mediaType: MEDIA.ociLayerGzip, digest: `sha256:${'2'.repeat(64)}`, size: body.length }, join(d, 'bad'))).rejects.toThrow(/content has digest .*refused, nothing stored/);
      expect(() => readFileSync(join(d, 'bad'))).toThrow(/ENOENT/);
      await expect(c.blob({ mediaType: MEDIA.ociLayerGzip, digest, size: body.length - 1 }, join(d, 'big'))).rejects.toThrow(/more than the 10 bytes/);
      // the redirect target is another origin: it must not see the bearer token
      const r = new RegistryClient(parseReference(`${host}/redirect:1`), { insecure: [host], credentials: { bearer: 'secret' } });
      await r.blob({ mediaType: MEDIA.ociLayerGzip, digest, size: body.length }, join(d, 'redir'));
      expect(readFileSync(join(d, 'redir'))).toEqual(body);
    } finally {
      rmSync(d, { recursive: true, force: true });
      await srv.close();
      await other.close();
    }
  });
});

describe('store garbage collection', () => {
  it('keeps what a live pull has leased, removes unnamed content otherwise', () => {
    const d = mkdtempSync(join(tmpdir(), 'tsrun-store-'));
    try {
      const pulling = new ContentStore(d);
      const leased = pulling.writeBlob(Buffer.from('in flight'));
      const other = new ContentStore(d);
      const stray = other.writeBlob(Buffer.from('stray'));
      other.releaseLease();
      // another process (rmi, prune) collects: the leased blob survives, the stray does not
      expect(new ContentStore(d).gc()).toBe(5);
      expect(pulling.hasBlob(leased)).toBe(true);
      expect(other.hasBlob(stray)).toBe(false);
      pulling.releaseLease();
      new ContentStore(d).gc();
      expect(existsSync(pulling.blobPath(leased))).toBe(false);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
});

describe('store records', () => {
  it('an image whose config has no diff_ids is refused by name, not with a TypeError', async () => {
    const d = mkdtempSync(join(tmpdir(), 'tsrun-store-'));
    try {
      const store = new ContentStore(d);
      const config = store.writeBlob(Buffer.from(JSON.stringify({ os: 'linux', architecture: 'amd64', config: {} })));
      const rec = await store.record({ digest: config, config, layers: [{ digest: config, size: 1, mediaType: MEDIA.ociLayer, diffId: config }], names: ['docker.io/library/old:1'], repoDigests: [], source: 'import' });
      expect(() => store.resolved(rec)).toThrow(/^image old:1: its config has no rootfs\.diff_ids: tsrun rmi it, and import or pull it again$/);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
});

describe('repository digests (issue 16.4)', () => {
  it('an older images.json (repos + one index per manifest) reads as per-repository digests: the index only when one repository had it', () => {
    const d = mkdtempSync(join(tmpdir(), 'tsrun-store-'));
    const M = `sha256:${'a'.repeat(64)}`;
    const X = `sha256:${'b'.repeat(64)}`;
    try {
      const base = { config: M, layers: [], names: [], source: 'pull', added: '' };
      writeFileSync(
        join(d, 'images.json'),
        JSON.stringify({ version: 1, images: { [M]: { ...base, digest: M, repos: ['r.io/a', 'r.io/b'], index: X }, [X]: { ...base, digest: X, repos: ['r.io/c'], index: M } } }),
      );
      const ix = new ContentStore(d).readIndex();
      expect(ix.images[M]!.repoDigests).toEqual([`r.io/a@${M}`, `r.io/b@${M}`]);
      expect(ix.images[X]!.repoDigests).toEqual([`r.io/c@${X}`, `r.io/c@${M}`]);
      const store = new ContentStore(d);
      expect(store.find(`r.io/b@${X}`)).toBeUndefined();
      expect(store.find(`r.io/b@${M}`)?.digest).toBe(M);
      expect(store.find(`r.io/c@${M}`)?.digest).toBe(X);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
});

describe('pull progress', () => {
  function capture(tty: boolean, f: (p: ReturnType<typeof progressReporter>) => void): string {
    const d = mkdtempSync(join(tmpdir(), 'tsrun-progress-'));
    const fd = openSync(join(d, 'out'), 'w');
    try {
      f(progressReporter(fd, tty));
    } finally {
      closeSync(fd);
    }
    const out = readFileSync(join(d, 'out'), 'utf8');
    rmSync(d, { recursive: true, force: true });
    return out;
  }
  const run = (p: ReturnType<typeof progressReporter>) => {
    p.layer('aaa', 2 << 20);
    p.layer('bbb', 1024);
    p.update('aaa', 0, 'downloading');
    p.update('aaa', 1 << 20);
    p.update('aaa', 2 << 20, 'downloaded');
    p.update('bbb', 1024, 'already here');
    p.update('aaa', 2 << 20, 'done');
    p.end();
    p.line('Digest: sha256:x');
  };
  it('plain lines when not a terminal', () => {
    const out = capture(false, run);
    expect(out).toMatch(/^aaa: downloaded 2\.0 MB in \d+\.\d s\nbbb: already here\naaa: done\nDigest: sha256:x\n$/);
  });
  it('rows redrawn in place on a terminal, the final line once below them', () => {
    const out = capture(true, run);
    expect(out.endsWith('\x1b[2Kaaa: done\n\x1b[2Kbbb: already here\nDigest: sha256:x\n')).toBe(true);
    expect(out).toContain('\x1b[2A'); // moved up over its two rows
    expect(out.split('Digest').length).toBe(2);
  });
});

describe('insecure registries and mirrors (issue 16.1)', () => {
  it('loopback is plain http by default (127.0.0.0/8, ::1, localhost), others only when listed, by host, host:port or CIDR', () => {
    for (const h of ['127.0.0.1:5000', '127.3.4.5', '[::1]:5000', 'localhost:5000']) expect(isInsecure(h)).toBe(true);
    for (const h of ['192.0.2.2:5000', '[fd00::1]:5000', 'reg.example', '128.0.0.1']) expect(isInsecure(h)).toBe(false);
    expect(isInsecure('192.0.2.2:5000', ['192.0.2.0/24'])).toBe(true);
    expect(isInsecure('192.0.3.2:5000', ['192.0.2.0/24'])).toBe(false);
    expect(isInsecure('reg.lan:5000', ['reg.lan'])).toBe(true);
    expect(isInsecure('reg.lan:5000', ['reg.lan:5001'])).toBe(false);
    expect(isInsecure('[fd00::1]:5000', ['fd00::/64'])).toBe(true);
  });
  it('mirrors apply to Docker Hub images only, in order, before Docker Hub itself', () => {
    const mirrors = ['http://127.0.0.1:5000', 'https://m.example'];
    expect(endpointsFor(parseReference('alpine'), { mirrors })).toEqual([
      { base: 'http://127.0.0.1:5000', mirror: 'http://127.0.0.1:5000' },
      { base: 'https://m.example', mirror: 'https://m.example' },
      { base: 'https://registry-1.docker.io' },
    ]);
    expect(endpointsFor(parseReference('quay.io/x/y'), { mirrors })).toEqual([{ base: 'https://quay.io' }]);
    expect(endpointsFor(parseReference('127.0.0.1:5000/x'), { mirrors })).toEqual([{ base: 'http://127.0.0.1:5000' }]);
  });
});
