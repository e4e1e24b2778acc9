import { createHash } from 'node:crypto';
import { closeSync, copyFileSync, createReadStream, existsSync, mkdirSync, openSync, readFileSync, readSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { TsrunError, UnsupportedError, UsageError } from '../errors.js';
import { canonicalName, parseReference } from './reference.js';
import { ContentStore, LAYER_TYPES, MEDIA, sha256, type Descriptor, type ImageRecord, type Manifest, type OciImageConfig } from './store.js';
import { ChunkReader, readTar, writeTarOfDir } from './tar.js';
import { hostPlatform, pickPlatform } from './pull.js';
import { sniffCompression, unpackLayer } from './unpack.js';
import type { ImageConfig } from './types.js';

// `tsrun import`: images that arrive as files rather than from a registry.
//   - a root filesystem directory (tarred into one layer, then unpacked like any layer)
//   - a plain root filesystem tarball, gzip/zstd or not (that tar is the layer)
//   - `docker save` output (manifest.json + config + layer tars)
//   - an OCI image layout directory (oci-layout + index.json + blobs/), or a tar of one
// Archives are opened with the same safe unpacker as layers, into the store's tmp/; every
// blob copied from them is hashed and checked against the digest it is named by.

export class ImportError extends TsrunError {}

function fileDigest(path: string): { digest: string; size: number } {
  const h = createHash('sha256');
  const fd = openSync(path, 'r');
  const buf = Buffer.alloc(1 << 20);
  let size = 0;
  try {
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0; size += n) h.update(buf.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return { digest: `sha256:${h.digest('hex')}`, size };
}

/** Copies a file into blobs/ under its own digest (checked against `expect` if given). */
function ingestFile(store: ContentStore, path: string, expect?: string): { digest: string; size: number } {
  const { digest, size } = fileDigest(path);
  if (expect && digest !== expect) throw new ImportError(`${path}: content has digest ${digest}, the archive names it ${expect}: refused`);
  if (!store.hasBlob(digest)) {
    const tmp = store.tmpPath('blob');
    try {
      copyFileSync(path, tmp);
    } catch (e) {
      rmSync(tmp, { force: true }); // no partial copy left (ENOSPC)
      throw e;
    }
    store.commitBlob(tmp, digest);
  }
  return { digest, size };
}

function layerMediaType(path: string): string {
  const c = sniffCompression(path);
  return c === 'gzip' ? MEDIA.ociLayerGzip : c === 'zstd' ? MEDIA.ociLayerZstd : MEDIA.ociLayer;
}

function nameOf(name: string): string {
  const p = parseReference(name);
  if (p.digest) throw new UsageError(`import name ${JSON.stringify(name)}: give a name[:tag], not a digest`);
  return canonicalName(p);
}

/** Builds config + manifest around layers already in blobs/, unpacks them, records the image. */
async function commitImage(
  store: ContentStore,
  layers: { digest: string; size: number; mediaType: string; diffId?: string }[],
  given: { parsed: OciImageConfig; bytes: Buffer } | undefined,
  imageConfig: ImageConfig,
  names: string[],
  source: ImageRecord['source'],
): Promise<ImageRecord> {
  const config = given?.parsed;
  const diffIds: string[] = [];
  for (const [i, l] of layers.entries()) {
    const expected = l.diffId ?? config?.rootfs?.diff_ids?.[i];
    if (expected) {
      await store.ensureLayer(l.digest, expected);
      diffIds.push(expected);
    } else {
      // the diff_id is learnt by unpacking: unpack into tmp, then adopt under that id
      const tmp = store.tmpPath('layer');
      mkdirSync(tmp, { mode: 0o755 });
      try {
        const st = await unpackLayer(store.blobPath(l.digest), tmp, l.digest.slice(7, 19));
        diffIds.push(st.diffId);
      } finally {
        rmSync(tmp, { recursive: true, force: true });
      }
      await store.ensureLayer(l.digest, diffIds[i]!);
    }
  }
  const plat = hostPlatform();
  const cfg: OciImageConfig = config ?? {
    created: new Date().toISOString(),
    architecture: plat.architecture,
    os: 'linux',
    config: imageConfig,
    rootfs: { type: 'layers', diff_ids: diffIds },
    history: [{ created_by: 'tsrun import' }],
  };
  if (config) cfg.config = { ...(config.config ?? {}), ...imageConfig };
  // an archive's own config is kept byte for byte: the image id stays the one it had
  const cfgDigest = given && Object.keys(imageConfig).length === 0 ? store.writeBlob(given.bytes) : store.writeBlob(Buffer.from(JSON.stringify(cfg)));
  const manifest: Manifest = {
    schemaVersion: 2,
    mediaType: MEDIA.ociManifest,
    config: { mediaType: MEDIA.ociConfig, digest: cfgDigest, size: store.readBlob(cfgDigest).length },
    layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
  };
  const mBytes = Buffer.from(JSON.stringify(manifest));
  const digest = store.writeBlob(mBytes);
  return store.record({
    digest,
    config: cfgDigest,
    layers: layers.map((l, i) => ({ digest: l.digest, size: l.size, mediaType: l.mediaType, diffId: diffIds[i]! })),
    names,
    repos: [],
    source,
    ...(cfg.created ? { created: cfg.created } : {}),
    platform: `${cfg.os}/${cfg.architecture}`,
  });
}

/** A root filesystem directory as a one-layer image. */
export async function importRootfsDir(store: ContentStore, dir: string, name: string, config: ImageConfig, source: ImageRecord['source'] = 'import'): Promise<ImageRecord> {
  try {
    return await importDirLeased(store, dir, name, config, source);
  } finally {
    store.releaseLease();
  }
}

async function importDirLeased(store: ContentStore, dir: string, name: string, config: ImageConfig, source: ImageRecord['source']): Promise<ImageRecord> {
  const names = [nameOf(name)];
  const tmp = store.tmpPath('layer.tar');
  const fd = openSync(tmp, 'wx', 0o600);
  let t: { digest: string; size: number };
  try {
    t = writeTarOfDir(dir, fd);
  } catch (e) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw e;
  }
  closeSync(fd);
  if (store.hasBlob(t.digest)) rmSync(tmp);
  else store.commitBlob(tmp, t.digest);
  return commitImage(store, [{ digest: t.digest, size: t.size, mediaType: MEDIA.ociLayer, diffId: t.digest }], undefined, config, names, source);
}

function readJson<T>(path: string, what: string): T {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as T;
  } catch (e) {
    throw new ImportError(`${what}: ${(e as Error).message}`, { cause: e });
  }
}

/** Paths inside an archive must stay inside it. */
function inside(root: string, rel: string, what: string): string {
  if (typeof rel !== 'string' || rel.startsWith('/') || rel.split('/').includes('..')) throw new ImportError(`${what}: path ${JSON.stringify(rel)} leaves the archive`);
  return join(root, rel);
}

async function importDockerSave(store: ContentStore, root: string, name?: string): Promise<ImageRecord[]> {
  const list = readJson<{ Config: string; RepoTags?: string[] | null; Layers: string[] }[]>(join(root, 'manifest.json'), 'manifest.json');
  if (!Array.isArray(list) || list.length === 0) throw new ImportError('manifest.json lists no image');
  if (name && list.length > 1) throw new UsageError(`the archive holds ${list.length} images: import it without a NAME (each keeps its own tags)`);
  const out: ImageRecord[] = [];
  for (const img of list) {
    const cfgPath = inside(root, img.Config, 'manifest.json Config');
    const cfgBytes = readFileSync(cfgPath);
    const config = JSON.parse(cfgBytes.toString('utf8')) as OciImageConfig;
    const layers = img.Layers.map((l) => {
      const p = inside(root, l, 'manifest.json Layers');
      const expect = /^blobs\/sha256\/([a-f0-9]{64})$/.exec(l) ? `sha256:${l.slice(13)}` : undefined;
      return { ...ingestFile(store, p, expect), mediaType: layerMediaType(p) };
    });
    const names = name ? [nameOf(name)] : (img.RepoTags ?? []).map(nameOf);
    out.push(await commitImage(store, layers, { parsed: config, bytes: cfgBytes }, {}, names, 'import'));
  }
  return out;
}

async function importOciLayout(store: ContentStore, root: string, name?: string): Promise<ImageRecord[]> {
  const blob = (d: Descriptor) => {
    if (!/^sha256:[a-f0-9]{64}$/.test(d.digest)) throw new ImportError(`unsupported digest ${JSON.stringify(d.digest)}`);
    const p = join(root, 'blobs', 'sha256', d.digest.slice(7));
    if (!existsSync(p)) throw new ImportError(`blob ${d.digest} is missing from the layout`);
    const b = readFileSync(p);
    if (sha256(b) !== d.digest) throw new ImportError(`blob ${d.digest}: content does not match its digest: refused`);
    return b;
  };
  const index = readJson<{ manifests?: Descriptor[] }>(join(root, 'index.json'), 'index.json');
  const out: ImageRecord[] = [];
  const tops = index.manifests ?? [];
  if (tops.length === 0) throw new ImportError('index.json lists no manifest');
  for (const top of name ? tops.slice(0, 1) : tops) {
    let d = top;
    if (d.mediaType === MEDIA.ociIndex || d.mediaType === MEDIA.dockerList) {
      const inner = JSON.parse(blob(d).toString('utf8')) as { manifests?: Descriptor[] };
      const pick = pickPlatform(inner.manifests ?? []);
      if (!pick) throw new UnsupportedError(`the layout's index has no image for ${hostPlatform().os}/${hostPlatform().architecture}`);
      d = pick;
    }
    const manifest = JSON.parse(blob(d).toString('utf8')) as Manifest;
    const cfgBytes = blob(manifest.config);
    const config = JSON.parse(cfgBytes.toString('utf8')) as OciImageConfig;
    const layers = manifest.layers.map((l) => {
      if (!LAYER_TYPES.has(l.mediaType)) throw new UnsupportedError(`layer ${l.digest}: media type ${JSON.stringify(l.mediaType)} is not supported`);
      const p = join(root, 'blobs', 'sha256', l.digest.slice(7));
      return { ...ingestFile(store, p, l.digest), mediaType: l.mediaType };
    });
    const refName = top.annotations?.['io.containerd.image.name'] ?? top.annotations?.['org.opencontainers.image.ref.name'];
    let names: string[] = [];
    if (name) names = [nameOf(name)];
    else if (refName) {
      try {
        names = [nameOf(refName)];
      } catch {
        names = []; // a bare tag such as "latest": no repository to put it under
      }
    }
    out.push(await commitImage(store, layers, { parsed: config, bytes: cfgBytes }, {}, names, 'import'));
  }
  return out;
}

/** Reads only the headers: does the tar have manifest.json or oci-layout at its top? */
async function isImageArchive(path: string): Promise<boolean> {
  let found = false;
  for await (const e of readTar(new ChunkReader(createReadStream(path, { highWaterMark: 1 << 20 })))) {
    const n = e.name.replace(/^(\.\/)+/, '');
    if (n === 'manifest.json' || n === 'oci-layout') found = true;
  }
  return found;
}

function isTar(path: string): boolean {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(512);
    return readSync(fd, b, 0, 512, 0) === 512 && b.subarray(257, 262).toString('latin1') === 'ustar';
  } finally {
    closeSync(fd);
  }
}

/** `tsrun import FILE|DIR [NAME]`: figures out what it was given. */
export async function importPath(store: ContentStore, path: string, name: string | undefined, config: ImageConfig = {}): Promise<ImageRecord[]> {
  try {
    return await importLeased(store, path, name, config);
  } catch (e) {
    // A failed import (e.g. ENOSPC half way) leaves no blob or layer that no image names:
    // without its lease they are garbage, and gc keeps what other live processes lease.
    store.releaseLease();
    try {
      store.gc();
    } catch {
      /* the import's own error is the one to report */
    }
    throw e;
  } finally {
    store.releaseLease();
  }
}

async function importLeased(store: ContentStore, path: string, name: string | undefined, config: ImageConfig): Promise<ImageRecord[]> {
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    throw new UsageError(`import ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (st.isDirectory()) {
    if (existsSync(join(path, 'oci-layout'))) return importOciLayout(store, path, name);
    if (existsSync(join(path, 'manifest.json')) && !existsSync(join(path, 'bin'))) return importDockerSave(store, path, name);
    if (!name) throw new UsageError(`import ${path}: a root filesystem directory needs a NAME`);
    return [await importRootfsDir(store, path, name, config)];
  }
  // an archive: open it (safely) to see whether it is docker save / OCI, else it is a rootfs
  const compressed = sniffCompression(path) !== 'none';
  if (!compressed && !isTar(path)) throw new UsageError(`import ${path}: not a tar archive (nor gzip/zstd)`);
  const tmp = store.tmpPath('archive');
  mkdirSync(tmp, { mode: 0o700 });
  try {
    let opened = false;
    // only docker save / OCI archives are opened; a rootfs tarball is the layer itself
    if (!compressed && (await isImageArchive(path))) {
      await unpackLayer(path, tmp, path);
      opened = true;
    }
    if (opened && existsSync(join(tmp, 'oci-layout'))) return await importOciLayout(store, tmp, name);
    if (opened && existsSync(join(tmp, 'manifest.json')) && !existsSync(join(tmp, 'bin'))) return await importDockerSave(store, tmp, name);
    if (!name) throw new UsageError(`import ${path}: a root filesystem tarball needs a NAME`);
    const blob = ingestFile(store, path);
    return [await commitImage(store, [{ ...blob, mediaType: layerMediaType(path) }], undefined, config, [nameOf(name)], 'import')];
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** docker import's --change: CMD, ENTRYPOINT, ENV, WORKDIR, USER (JSON or shell form). */
export function applyChange(cfg: ImageConfig, change: string): ImageConfig {
  const m = /^\s*(\w+)\s+(.*)$/s.exec(change);
  if (!m) throw new UsageError(`--change ${JSON.stringify(change)}: expected INSTRUCTION VALUE, e.g. CMD ["sh"]`);
  const key = m[1]!.toUpperCase();
  const v = m[2]!.trim();
  const list = (): string[] => {
    if (v.startsWith('[')) {
      try {
        const a = JSON.parse(v);
        if (Array.isArray(a) && a.every((x) => typeof x === 'string')) return a;
      } catch {
        /* fall through */
      }
      throw new UsageError(`--change ${key}: ${v} is not a JSON array of strings`);
    }
    return ['/bin/sh', '-c', v];
  };
  switch (key) {
    case 'CMD':
      return { ...cfg, Cmd: list() };
    case 'ENTRYPOINT':
      return { ...cfg, Entrypoint: list() };
    case 'ENV': {
      const kv = v.includes('=') ? v : v.replace(/\s+/, '=');
      return { ...cfg, Env: [...(cfg.Env ?? []), kv] };
    }
    case 'WORKDIR':
      return { ...cfg, WorkingDir: v };
    case 'USER':
      return { ...cfg, User: v };
    case 'STOPSIGNAL':
      return { ...cfg, StopSignal: v };
    default:
      throw new UsageError(`--change ${key}: only CMD, ENTRYPOINT, ENV, WORKDIR, USER, STOPSIGNAL are supported`);
  }
}
