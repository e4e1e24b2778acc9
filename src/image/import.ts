import { createHash } from 'node:crypto';
import { closeSync, createReadStream, mkdirSync, openSync, readSync, rmSync, statSync, writeSync } from 'node:fs';
import { TsrunError, UnsupportedError, UsageError } from '../errors.js';
import { describeError, errnoOf } from '../kernel/errno.js';
import { canonicalName, parseReference } from './reference.js';
import { ContentStore, LAYER_TYPES, MEDIA, sha256, type Descriptor, type ImageRecord, type Manifest, type OciImageConfig } from './store.js';
import { ChunkReader, readTar, writeTarOfDir } from './tar.js';
import { ArchiveRoot } from './member.js';
import { removeTree } from '../runtime/remove-tree.js';
import { hostPlatform, pickPlatform } from './platform.js';
import { sniffCompression, unpackLayer } from './unpack.js';
import type { ImageConfig } from './types.js';

// `tsrun import`: images that arrive as files rather than from a registry.
//   - a root filesystem directory (tarred into one layer, then unpacked like any layer)
//   - a plain root filesystem tarball, gzip/zstd or not (that tar is the layer)
//   - `docker save` output (manifest.json + config + layer tars)
//   - an OCI image layout directory (oci-layout + index.json + blobs/), or a tar of one
// Archives are opened with the same safe unpacker as layers, into the store's tmp/; their
// members are read only as regular files inside the archive (member.ts), digests are checked
// against the OCI grammar before they name a file, every blob copied is hashed and checked
// against the digest it is named by, and every layer against the config's diff_id.

export class ImportError extends TsrunError {}

const DIGEST = /^sha256:[a-f0-9]{64}$/;

/** A digest from an archive names a file under blobs/: its grammar is checked before that. */
function checkDigest(d: unknown, what: string): string {
  if (typeof d !== 'string' || !DIGEST.test(d)) throw new ImportError(`${what} ${JSON.stringify(d)} is not sha256:<64 hex digits>: refused`);
  return d;
}

/**
 * Copies an open file into blobs/ under its own digest, hashing as it copies (checked
 * against `expect` if given); one pass, and only bytes that were read from that fd.
 */
function ingestFd(store: ContentStore, fd: number, what: string, expect?: string): { digest: string; size: number } {
  const h = createHash('sha256');
  const tmp = store.tmpPath('blob');
  const out = openSync(tmp, 'wx', 0o600);
  const buf = Buffer.alloc(1 << 20);
  let size = 0;
  try {
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0; size += n) {
      h.update(buf.subarray(0, n));
      writeSync(out, buf, 0, n);
    }
  } catch (e) {
    rmSync(tmp, { force: true });
    // a full data root (ENOSPC): name the file being filled, so the full file system is obvious
    throw errnoOf(e) ? new TsrunError(`${what}: write ${tmp}: ${describeError(e)}`, { cause: e }) : e;
  } finally {
    closeSync(out);
  }
  const digest = `sha256:${h.digest('hex')}`;
  if (expect && digest !== expect) {
    rmSync(tmp, { force: true });
    throw new ImportError(`${what}: content has digest ${digest}, the archive names it ${expect}: refused`);
  }
  if (store.hasBlob(digest)) rmSync(tmp, { force: true });
  else store.commitBlob(tmp, digest);
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

type Pending = Omit<ImageRecord, 'added'>;

/**
 * Builds config + manifest around layers already in blobs/ and unpacks them; the record is
 * returned, not written, so that an archive is recorded whole or not at all. An archive's own
 * config must list one diff_id per layer, and each layer must unpack to it.
 */
async function prepareImage(
  store: ContentStore,
  layers: { digest: string; size: number; mediaType: string; diffId?: string }[],
  given: { parsed: OciImageConfig; bytes: Buffer; what: string } | undefined,
  imageConfig: ImageConfig,
  names: string[],
  source: ImageRecord['source'],
): Promise<Pending> {
  const config = given?.parsed;
  if (given) {
    const bad = (why: string): never => {
      throw new ImportError(`${given.what}: ${why}: refused`);
    };
    if (typeof config !== 'object' || config === null || Array.isArray(config)) bad('not a JSON object');
    if (layers.length === 0) bad('the image has no layers');
    const ids = (config!.rootfs as { diff_ids?: unknown } | undefined)?.diff_ids;
    if (ids === undefined) bad('rootfs.diff_ids is missing');
    if (!Array.isArray(ids)) bad('rootfs.diff_ids is not a list');
    if ((ids as unknown[]).length !== layers.length) bad(`rootfs.diff_ids lists ${(ids as unknown[]).length} layers, the manifest ${layers.length}`);
    (ids as unknown[]).forEach((d, i) => checkDigest(d, `${given.what}: rootfs.diff_ids[${i}]`));
  }
  const diffIds: string[] = [];
  for (const [i, l] of layers.entries()) {
    const expected = l.diffId ?? config?.rootfs.diff_ids[i];
    if (expected) {
      await store.ensureLayer(l.digest, expected);
      diffIds.push(expected);
    } else {
      // a plain rootfs tarball: its diff_id is learnt by unpacking it (into tmp, then adopted)
      const tmp = store.tmpPath('layer');
      mkdirSync(tmp, { mode: 0o755 });
      try {
        const st = await unpackLayer(store.blobPath(l.digest), tmp, l.digest.slice(7, 19));
        diffIds.push(st.diffId);
      } finally {
        removeTree(tmp);
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
  return {
    digest,
    config: cfgDigest,
    layers: layers.map((l, i) => ({ digest: l.digest, size: l.size, mediaType: l.mediaType, diffId: diffIds[i]! })),
    names,
    repoDigests: [],
    source,
    ...(cfg.created ? { created: cfg.created } : {}),
    platform: `${cfg.os}/${cfg.architecture}`,
  };
}

/**
 * Runs an import holding the store's lease; on failure nothing it added stays: the lease is
 * dropped and what no image names is collected (rule: nothing left behind).
 */
async function leased<T>(store: ContentStore, fn: () => Promise<T>): Promise<T> {
  try {
    const r = await fn();
    store.releaseLease();
    return r;
  } catch (e) {
    store.releaseLease();
    try {
      store.gc();
    } catch {
      /* the import's own error is the one to report */
    }
    throw e;
  }
}

/** A root filesystem directory as a one-layer image. */
export async function importRootfsDir(store: ContentStore, dir: string, name: string, config: ImageConfig, source: ImageRecord['source'] = 'import'): Promise<ImageRecord> {
  return leased(store, async () => (await store.recordAll([await prepareDir(store, dir, name, config, source)]))[0]!);
}

async function prepareDir(store: ContentStore, dir: string, name: string, config: ImageConfig, source: ImageRecord['source']): Promise<Pending> {
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
  return prepareImage(store, [{ digest: t.digest, size: t.size, mediaType: MEDIA.ociLayer, diffId: t.digest }], undefined, config, names, source);
}

const isStringList = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string');

async function importDockerSave(store: ContentStore, root: ArchiveRoot, name?: string): Promise<Pending[]> {
  const list = root.json<{ Config: string; RepoTags?: string[] | null; Layers: string[] }[]>('manifest.json');
  if (!Array.isArray(list) || list.length === 0) throw new ImportError(`${root.label}: manifest.json lists no image`);
  if (name && list.length > 1) throw new UsageError(`the archive holds ${list.length} images: import it without a NAME (each keeps its own tags)`);
  const out: Pending[] = [];
  for (const [i, img] of list.entries()) {
    const where = `${root.label}: manifest.json [${i}]`;
    if (typeof img?.Config !== 'string') throw new ImportError(`${where}: Config is not a path: refused`);
    if (!isStringList(img.Layers)) throw new ImportError(`${where}: Layers is not a list of paths: refused`);
    if (img.RepoTags != null && !isStringList(img.RepoTags)) throw new ImportError(`${where}: RepoTags is not a list of names: refused`);
    const cfgBytes = root.read(img.Config);
    const config = root.parse<OciImageConfig>(img.Config, cfgBytes);
    const layers = img.Layers.map((l) => {
      const { fd } = root.open(l);
      try {
        // docker 25+ saves layers as blobs/sha256/<hex>: then their name is their digest
        const expect = /^blobs\/sha256\/[a-f0-9]{64}$/.test(l) ? `sha256:${l.slice(13)}` : undefined;
        const b = ingestFd(store, fd, `${root.label}: member ${JSON.stringify(l)}`, expect);
        return { ...b, mediaType: layerMediaType(store.blobPath(b.digest)) };
      } finally {
        closeSync(fd);
      }
    });
    const names = name ? [nameOf(name)] : (img.RepoTags ?? []).map(nameOf);
    out.push(await prepareImage(store, layers, { parsed: config, bytes: cfgBytes, what: `${root.label}: member ${JSON.stringify(img.Config)}` }, {}, names, 'import'));
  }
  return out;
}

async function importOciLayout(store: ContentStore, root: ArchiveRoot, name?: string): Promise<Pending[]> {
  const memberOf = (d: Descriptor, what: string) => {
    if (typeof d !== 'object' || d === null) throw new ImportError(`${root.label}: ${what} is not a descriptor: refused`);
    const digest = checkDigest(d.digest, `${root.label}: ${what}.digest`);
    if (!Number.isSafeInteger(d.size) || d.size < 0) throw new ImportError(`${root.label}: ${what}.size ${JSON.stringify(d.size)} is not a byte count: refused`);
    return { digest, rel: `blobs/sha256/${digest.slice(7)}` };
  };
  const json = <T>(d: Descriptor, what: string): { parsed: T; bytes: Buffer; rel: string } => {
    const { digest, rel } = memberOf(d, what);
    if (root.kind(rel) === undefined) throw new ImportError(`${root.label}: blob ${digest} (${what}) is missing from the layout`);
    const bytes = root.read(rel);
    if (sha256(bytes) !== digest) throw new ImportError(`${root.label}: member ${JSON.stringify(rel)}: content does not match its digest: refused`);
    if (bytes.length !== d.size) throw new ImportError(`${root.label}: member ${JSON.stringify(rel)} is ${bytes.length} bytes, ${what}.size says ${d.size}: refused`);
    try {
      return { parsed: JSON.parse(bytes.toString('utf8')) as T, bytes, rel };
    } catch (e) {
      throw new ImportError(`${root.label}: member ${JSON.stringify(rel)}: not JSON: ${(e as Error).message}`, { cause: e });
    }
  };
  const index = root.json<{ manifests?: Descriptor[] }>('index.json');
  const out: Pending[] = [];
  const tops = Array.isArray(index?.manifests) ? index.manifests : [];
  if (tops.length === 0) throw new ImportError(`${root.label}: index.json lists no manifest`);
  const picked = name ? tops.slice(0, 1) : tops;
  for (const [ti, top] of picked.entries()) {
    let d = top;
    let what = `index.json: manifests[${ti}]`;
    memberOf(d, what);
    if (d.mediaType === MEDIA.ociIndex || d.mediaType === MEDIA.dockerList) {
      const inner = json<{ manifests?: Descriptor[] }>(d, what).parsed;
      const pick = pickPlatform(Array.isArray(inner?.manifests) ? inner.manifests : []);
      if (!pick) throw new UnsupportedError(`the layout's index has no image for ${hostPlatform().os}/${hostPlatform().architecture}`);
      d = pick;
      what = `index ${top.digest}: the ${hostPlatform().architecture} manifest`;
    }
    const m = json<Manifest>(d, what);
    const manifest = m.parsed;
    const mwhat = `manifest ${d.digest}`;
    if (typeof manifest !== 'object' || manifest === null || !Array.isArray(manifest.layers)) throw new ImportError(`${root.label}: ${mwhat}: no layers list: refused`);
    const cfg = json<OciImageConfig>(manifest.config, `${mwhat}: config`);
    const layers = manifest.layers.map((l, i) => {
      const { digest, rel } = memberOf(l, `${mwhat}: layers[${i}]`);
      if (!LAYER_TYPES.has(l.mediaType)) throw new UnsupportedError(`layer ${digest}: media type ${JSON.stringify(l.mediaType)} is not supported`);
      const { fd } = root.open(rel);
      try {
        const b = ingestFd(store, fd, `${root.label}: member ${JSON.stringify(rel)}`, digest);
        if (b.size !== l.size) throw new ImportError(`${root.label}: member ${JSON.stringify(rel)} is ${b.size} bytes, ${mwhat}: layers[${i}].size says ${l.size}: refused`);
        return { ...b, mediaType: l.mediaType };
      } finally {
        closeSync(fd);
      }
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
    out.push(await prepareImage(store, layers, { parsed: cfg.parsed, bytes: cfg.bytes, what: `${root.label}: member ${JSON.stringify(cfg.rel)}` }, {}, names, 'import'));
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

/** docker save or OCI layout, told apart by their top-level members (looked up inside the archive) */
async function importOpened(store: ContentStore, root: ArchiveRoot, name: string | undefined): Promise<Pending[] | undefined> {
  if (root.has('oci-layout')) return importOciLayout(store, root, name);
  if (root.has('manifest.json') && !root.has('bin')) return importDockerSave(store, root, name);
  return undefined;
}

/** `tsrun import FILE|DIR [NAME]`: figures out what it was given. */
export async function importPath(store: ContentStore, path: string, name: string | undefined, config: ImageConfig = {}): Promise<ImageRecord[]> {
  return leased(store, async () => store.recordAll(await prepareAll(store, path, name, config)));
}

async function prepareAll(store: ContentStore, path: string, name: string | undefined, config: ImageConfig): Promise<Pending[]> {
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    throw new UsageError(`import ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (st.isDirectory()) {
    const root = new ArchiveRoot(path, path);
    try {
      const r = await importOpened(store, root, name);
      if (r) return r;
    } finally {
      root.close();
    }
    if (!name) throw new UsageError(`import ${path}: a root filesystem directory needs a NAME`);
    return [await prepareDir(store, path, name, config, 'import')];
  }
  if (!st.isFile()) throw new UsageError(`import ${path}: not a regular file or directory`);
  // an archive: open it (safely) to see whether it is docker save / OCI, else it is a rootfs
  const compressed = sniffCompression(path) !== 'none';
  if (!compressed && !isTar(path)) throw new UsageError(`import ${path}: not a tar archive (nor gzip/zstd)`);
  const tmp = store.tmpPath('archive');
  mkdirSync(tmp, { mode: 0o700 });
  try {
    // only docker save / OCI archives are opened; a rootfs tarball is the layer itself
    if (!compressed && (await isImageArchive(path))) {
      await unpackLayer(path, tmp, path);
      const root = new ArchiveRoot(tmp, path);
      try {
        const r = await importOpened(store, root, name);
        if (r) return r;
      } finally {
        root.close();
      }
    }
    if (!name) throw new UsageError(`import ${path}: a root filesystem tarball needs a NAME`);
    const fd = openSync(path, 'r');
    let blob;
    try {
      blob = ingestFd(store, fd, path);
    } finally {
      closeSync(fd);
    }
    return [await prepareImage(store, [{ ...blob, mediaType: layerMediaType(store.blobPath(blob.digest)) }], undefined, config, [nameOf(name)], 'import')];
  } finally {
    removeTree(tmp);
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
