import { createHash, randomBytes } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { StateError, TsrunError } from '../errors.js';
import { removeTree } from '../runtime/remove-tree.js';
import { withLock } from '../runtime/state.js';
import { canonicalName, familiarRepo, parseReference, repoName, splitTagged } from './reference.js';
import type { ImageConfig, ImageStore, ResolvedImage } from './types.js';
import { LayerError, unpackLayer } from './unpack.js';

// The content-addressed image store under <data>/images:
//   blobs/sha256/<hex>     manifests, configs and layer blobs, as the registry serves them
//   layers/<hex>/          each layer unpacked once, keyed by its diff_id (the sha256 of the
//                          uncompressed tar), shared by every image that has it; the
//                          overlayfs lower dirs of containers
//   images.json            manifest digest → names, config, layers (written atomically)
//   tmp/                   partial downloads and unpacks; removed on failure
// Only verified content gets a name here: a blob is renamed into blobs/ after its digest and
// size matched, a layer into layers/ after its diff_id matched the image config.

export const MEDIA = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayer: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const;

export const LAYER_TYPES = new Set<string>([MEDIA.ociLayer, MEDIA.ociLayerGzip, MEDIA.ociLayerZstd, MEDIA.dockerLayer, 'application/vnd.docker.image.rootfs.diff.tar']);

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: { os?: string; architecture?: string; variant?: string };
  annotations?: Record<string, string>;
}

export interface Manifest {
  schemaVersion: number;
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
}

export interface OciImageConfig {
  created?: string;
  architecture?: string;
  os?: string;
  config?: ImageConfig & { Labels?: Record<string, string>; ExposedPorts?: unknown; Volumes?: unknown };
  rootfs: { type: string; diff_ids: string[] };
  history?: unknown[];
}

export interface ImageRecord {
  /** manifest digest: the image as the registry names it */
  digest: string;
  /** config digest: docker's "IMAGE ID" */
  config: string;
  layers: { digest: string; size: number; mediaType: string; diffId: string }[];
  /** canonical tagged names, e.g. docker.io/library/alpine:3.20 */
  names: string[];
  /**
   * docker's RepoDigests, canonical: repo@digest for each repository that served this image
   * under that digest (the index's digest when the pull went through an index). A digest
   * belongs to a repository: the same manifest pulled from two repositories through two
   * different indexes has one entry per repository, never a digest the other never had.
   */
  repoDigests: string[];
  source: 'pull' | 'import' | 'builtin';
  added: string;
  created?: string;
  platform?: string;
}

interface Index {
  version: 1;
  images: Record<string, ImageRecord>;
  /** each layer's unpacked size (UnpackStats.size) by its diff_id's hex, noted when it was unpacked */
  layerSizes?: Record<string, number>;
}

export const sha256 = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const hexOf = (digest: string) => {
  const m = /^sha256:([a-f0-9]{64})$/.exec(digest);
  if (!m) throw new TsrunError(`unsupported digest ${JSON.stringify(digest)}: only sha256 is supported`);
  return m[1]!;
};

export function shortId(digest: string): string {
  return digest.replace(/^sha256:/, '').slice(0, 12);
}

export class ContentStore implements ImageStore {
  private leaseFile: string | undefined;
  constructor(readonly dir: string) {}

  /**
   * Content this process has put in the store but not yet named in images.json (a pull in
   * progress): listed in tmp/lease-<pid>-…, which gc() respects while the process lives, so
   * an `rmi`/`prune` running meanwhile cannot delete it.
   */
  lease(key: string): void {
    this.leaseFile ??= this.tmpPath('lease');
    appendFileSync(this.leaseFile, `${key}\n`);
  }
  releaseLease(): void {
    if (this.leaseFile) rmSync(this.leaseFile, { force: true });
    this.leaseFile = undefined;
  }

  blobPath(digest: string): string {
    return join(this.dir, 'blobs', 'sha256', hexOf(digest));
  }
  layerDir(diffId: string): string {
    return join(this.dir, 'layers', hexOf(diffId));
  }
  hasBlob(digest: string): boolean {
    const has = existsSync(this.blobPath(digest));
    if (has) this.lease(hexOf(digest));
    return has;
  }
  /** a fresh path in tmp/ (same filesystem as blobs/ and layers/, so rename is atomic) */
  tmpPath(what: string): string {
    mkdirSync(join(this.dir, 'tmp'), { recursive: true, mode: 0o700 });
    return join(this.dir, 'tmp', `${what}-${process.pid}-${randomBytes(4).toString('hex')}`);
  }
  /** moves a verified file into blobs/ */
  commitBlob(tmp: string, digest: string): string {
    const dst = this.blobPath(digest);
    mkdirSync(join(this.dir, 'blobs', 'sha256'), { recursive: true, mode: 0o700 });
    this.lease(hexOf(digest));
    renameSync(tmp, dst);
    return dst;
  }
  writeBlob(data: Buffer): string {
    const digest = sha256(data);
    if (this.hasBlob(digest)) return digest;
    const tmp = this.tmpPath('blob');
    try {
      writeFileSync(tmp, data);
    } catch (e) {
      rmSync(tmp, { force: true }); // no partial file left (ENOSPC)
      throw e;
    }
    this.commitBlob(tmp, digest);
    return digest;
  }
  readBlob(digest: string): Buffer {
    const b = readFileSync(this.blobPath(digest));
    if (sha256(b) !== digest) throw new StateError(`blob ${digest} in the store is corrupt (its content does not match its digest): tsrun image prune, then pull again`);
    return b;
  }

  /** Unpacks a layer blob once (by diff_id); verifies the diff_id the config promised. */
  async ensureLayer(blobDigest: string, diffId: string, label = shortId(blobDigest)): Promise<string> {
    const dst = this.layerDir(diffId);
    this.lease(`layer:${hexOf(diffId)}`);
    if (existsSync(dst)) return dst;
    mkdirSync(join(this.dir, 'layers'), { recursive: true, mode: 0o700 });
    const tmp = join(this.dir, 'layers', `.tmp-${hexOf(diffId).slice(0, 12)}-${process.pid}-${randomBytes(3).toString('hex')}`);
    mkdirSync(tmp, { mode: 0o755 });
    try {
      const st = await unpackLayer(this.blobPath(blobDigest), tmp, label);
      if (st.diffId !== diffId) throw new LayerError(`layer ${label}: uncompressed content has digest ${st.diffId}, the image config says ${diffId}; refused`);
      try {
        renameSync(tmp, dst);
      } catch (e) {
        // another tsrun unpacked the same layer meanwhile: theirs is as good
        if (!existsSync(dst)) throw e;
        removeTree(tmp);
      }
      // what `images` and `image inspect` show as SIZE, as docker's: the unpacked bytes, not
      // the compressed blobs; entries of layers gc() removed go at the same time
      await this.update((ix) => {
        const sizes = (ix.layerSizes ??= {});
        sizes[hexOf(diffId)] = st.size;
        for (const k of Object.keys(sizes)) if (!existsSync(join(this.dir, 'layers', k))) delete sizes[k];
      });
      return dst;
    } catch (e) {
      try {
        removeTree(tmp);
      } catch {
        /* the unpack's error is the one to report; gc() collects what is left */
      }
      throw e;
    }
  }

  private indexPath(): string {
    return join(this.dir, 'images.json');
  }
  readIndex(): Index {
    try {
      const ix = JSON.parse(readFileSync(this.indexPath(), 'utf8')) as Index;
      for (const r of Object.values(ix.images)) migrateRecord(r);
      return ix;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, images: {} };
      throw new StateError(`${this.indexPath()}: unreadable image index: ${(e as Error).message}`, { cause: e });
    }
  }
  private writeIndex(ix: Index): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const tmp = `${this.indexPath()}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(ix, null, 1));
    renameSync(tmp, this.indexPath());
  }
  async update<T>(fn: (ix: Index) => T): Promise<T> {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    return withLock({ root: this.dir, data: this.dir }, 'images-index', () => {
      const ix = this.readIndex();
      const r = fn(ix);
      this.writeIndex(ix);
      return r;
    });
  }

  /**
   * Records an image whose blobs and layers are all in the store; `names` are canonical
   * tagged names, moved here from any image that had them (that one keeps its other names,
   * or stays as a dangling `<none>` image until pruned, as docker's).
   */
  async record(rec: Omit<ImageRecord, 'added'>): Promise<ImageRecord> {
    return this.recordAll([rec])
      .then((r) => r[0]!)
      .finally(() => this.releaseLease());
  }

  /** Records the images of one archive together: all of them, or (an error) none. */
  async recordAll(recs: Omit<ImageRecord, 'added'>[]): Promise<ImageRecord[]> {
    return this.update((ix) => {
      const out: ImageRecord[] = [];
      for (const rec of recs) {
        for (const other of Object.values(ix.images)) if (other.digest !== rec.digest) other.names = other.names.filter((n) => !rec.names.includes(n));
        const prev = ix.images[rec.digest];
        const r: ImageRecord = {
          ...rec,
          names: [...new Set([...(prev?.names ?? []), ...rec.names])],
          repoDigests: [...new Set([...(prev?.repoDigests ?? []), ...rec.repoDigests])],
          added: new Date().toISOString(),
        };
        ix.images[rec.digest] = r;
        out.push(r);
      }
      return out;
    });
  }

  /** Gives an image another name (moved from any image that had it), as docker tag. */
  async tag(source: string, target: string): Promise<ImageRecord> {
    const p = parseReference(target);
    if (p.digest) throw new StateError(`tag ${JSON.stringify(target)}: a tag, not a digest`);
    const name = canonicalName(p);
    return this.update((ix) => {
      const rec = this.find(source, ix);
      if (!rec) throw new StateError(`no such image ${JSON.stringify(source)}: local images: ${this.localNames()}`);
      for (const other of Object.values(ix.images)) other.names = other.names.filter((n) => n !== name);
      rec.names = [...rec.names, name];
      return rec;
    });
  }

  /** Finds an image by name[:tag], name@digest, manifest digest, or image id (prefix). */
  find(ref: string, ix: Index = this.readIndex()): ImageRecord | undefined {
    const all = Object.values(ix.images);
    if (!ref.startsWith('sha256:')) {
      const p = parseReference(ref);
      if (p.digest) {
        // repo@digest: only a digest that repository served (docker's RepoDigests), or the
        // manifest itself when that repository served it through one of its indexes
        const repo = repoName(p);
        const r = all.find((r) => r.repoDigests.includes(`${repo}@${p.digest}`) || (r.digest === p.digest && r.repoDigests.some((d) => d.startsWith(`${repo}@`))));
        if (r) return r;
      } else {
        const r = all.find((r) => r.names.includes(canonicalName(p)));
        if (r) return r;
      }
    }
    // an image id or manifest digest, or a unique prefix of one (as docker takes ids)
    const hex = ref.replace(/^sha256:/, '');
    if (/^[a-f0-9]{4,64}$/.test(hex)) {
      const byId = all.filter((r) => r.config.slice(7).startsWith(hex) || r.digest.slice(7).startsWith(hex));
      if (byId.length > 1) throw new StateError(`image id prefix ${ref} is ambiguous`);
      return byId[0];
    }
    return undefined;
  }

  async resolve(ref: string): Promise<ResolvedImage> {
    const rec = this.find(ref);
    if (!rec) throw new StateError(`unknown image ${JSON.stringify(ref)}: local images: ${this.localNames()}`);
    return this.resolved(rec);
  }

  resolved(rec: ImageRecord): ResolvedImage {
    const config = this.config(rec);
    // a record made by an older tsrun from an archive whose config lacked diff_ids
    if (!Array.isArray(config?.rootfs?.diff_ids)) throw new StateError(`image ${displayName(rec)}: its config has no rootfs.diff_ids: tsrun rmi it, and import or pull it again`);
    if (config.rootfs.diff_ids.length !== rec.layers.length) throw new StateError(`image ${rec.digest}: config lists ${config.rootfs.diff_ids.length} layers, manifest ${rec.layers.length}`);
    const layers = rec.layers.map((l) => {
      const d = this.layerDir(l.diffId);
      if (!existsSync(d)) throw new StateError(`image ${displayName(rec)}: layer ${shortId(l.diffId)} is missing from the store; pull or import it again`);
      return d;
    });
    return { name: rec.names[0] ?? `<none>@${rec.digest}`, id: rec.digest, layers, config: config.config ?? {} };
  }

  config(rec: ImageRecord): OciImageConfig {
    return JSON.parse(this.readBlob(rec.config).toString('utf8')) as OciImageConfig;
  }

  localNames(): string {
    const names = Object.values(this.readIndex().images).flatMap((r) => r.names.map(familiarTagged));
    return names.length ? names.sort().join(', ') : '(none)';
  }

  async list(): Promise<{ name: string; id: string; size?: number; created?: string }[]> {
    return Object.values(this.readIndex().images).flatMap((r) => {
      const size = this.size(r);
      const names = r.names.length ? r.names.map(familiarTagged) : ['<none>:<none>'];
      return names.map((name) => ({ name, id: r.config, size, ...(r.created ? { created: r.created } : {}) }));
    });
  }

  records(): ImageRecord[] {
    return Object.values(this.readIndex().images);
  }

  private layerSizes?: Record<string, number>;
  /**
   * An image's SIZE, as docker's: the bytes its layers hold unpacked. A layer unpacked by an
   * older tsrun (no size recorded) counts its compressed blob instead.
   */
  size(r: ImageRecord): number {
    this.layerSizes ??= this.readIndex().layerSizes ?? {};
    return r.layers.reduce((s, l) => s + (this.layerSizes![hexOf(l.diffId)] ?? l.size), 0);
  }

  /**
   * Removes a name (or, given an id/digest, the image with all its names). An image that
   * a container uses (`inUse` has its manifest digest) is refused unless `force`; forced,
   * it only loses its names and stays until no container needs its layers.
   */
  async remove(ref: string, force: boolean, inUse: Set<string>): Promise<{ untagged: string[]; deleted?: string }> {
    const out = await this.update((ix) => {
      const rec = this.find(ref, ix);
      if (!rec) throw new StateError(`no such image ${JSON.stringify(ref)}: local images: ${this.localNames()}`);
      let byName: string | undefined;
      try {
        const p = parseReference(ref);
        if (!p.digest && rec.names.includes(canonicalName(p))) byName = canonicalName(p);
      } catch {
        /* an id */
      }
      const used = inUse.has(rec.digest);
      if (byName && rec.names.length > 1) {
        rec.names = rec.names.filter((n) => n !== byName);
        return { untagged: [familiarTagged(byName)] };
      }
      if (used && !force) throw new StateError(`image ${displayName(rec)} (${shortId(rec.config)}) is used by a container: remove the container first, or use rmi -f`);
      const untagged = rec.names.map(familiarTagged);
      if (used) {
        rec.names = [];
        return { untagged };
      }
      delete ix.images[rec.digest];
      return { untagged, deleted: rec.config };
    });
    this.gc();
    return out;
  }

  /** Removes images without a name that no container uses, then unreferenced content. */
  async prune(inUse: Set<string>, all = false): Promise<{ deleted: string[]; reclaimed: number }> {
    const deleted = await this.update((ix) => {
      const gone: string[] = [];
      for (const r of Object.values(ix.images)) {
        if (inUse.has(r.digest)) continue;
        if (r.names.length === 0 || (all && r.source !== 'builtin')) {
          delete ix.images[r.digest];
          gone.push(r.config);
        }
      }
      return gone;
    });
    return { deleted, reclaimed: this.gc() };
  }

  /** Deletes blobs, layers and temporary files no image record references; returns bytes freed. */
  gc(): number {
    const ix = this.readIndex();
    const blobs = new Set<string>();
    const layers = new Set<string>();
    for (const r of Object.values(ix.images)) {
      blobs.add(hexOf(r.digest));
      blobs.add(hexOf(r.config));
      for (const l of r.layers) (blobs.add(hexOf(l.digest)), layers.add(hexOf(l.diffId)));
    }
    const tdir = join(this.dir, 'tmp');
    const alive = (name: string) => {
      const m = /-(\d+)-[a-f0-9]+$/.exec(name);
      return Boolean(m && existsSync(`/proc/${m[1]}`));
    };
    for (const t of existsSync(tdir) ? readdirSync(tdir) : []) {
      if (!t.startsWith('lease-') || !alive(t)) continue;
      try {
        for (const k of readFileSync(join(tdir, t), 'utf8').split('\n')) {
          if (k.startsWith('layer:')) layers.add(k.slice(6));
          else if (k) blobs.add(k);
        }
      } catch {
        /* released meanwhile */
      }
    }
    let freed = 0;
    const bdir = join(this.dir, 'blobs', 'sha256');
    for (const b of existsSync(bdir) ? readdirSync(bdir) : []) {
      if (blobs.has(b)) continue;
      try {
        freed += statSync(join(bdir, b)).size;
      } catch {
        /* gone already */
      }
      rmSync(join(bdir, b), { force: true });
    }
    const ldir = join(this.dir, 'layers');
    for (const l of existsSync(ldir) ? readdirSync(ldir) : []) {
      if (layers.has(l)) continue;
      // a .tmp- dir of a live unpack is left to its owner
      const m = /^\.tmp-[a-f0-9]+-(\d+)-/.exec(l);
      if (m && existsSync(`/proc/${m[1]}`)) continue;
      removeTree(join(ldir, l));
    }
    for (const t of existsSync(tdir) ? readdirSync(tdir) : []) if (!alive(t)) removeTree(join(tdir, t));
    return freed;
  }
}

/**
 * Records of an older tsrun kept `repos` and one `index` per manifest: every repository in
 * `repos` served the manifest itself, but the index digest may be another repository's, so
 * it is kept only when one repository is listed.
 */
function migrateRecord(r: ImageRecord & { repos?: string[]; index?: string }): void {
  if (Array.isArray(r.repoDigests)) return;
  const repos = r.repos ?? [];
  r.repoDigests = [...repos.map((x) => `${x}@${r.digest}`), ...(r.index && repos.length === 1 ? [`${repos[0]}@${r.index}`] : [])];
  delete r.repos;
  delete r.index;
}

/** The digest a repository knows this image by (docker images --digests), if any. */
export function repoDigestFor(r: ImageRecord, repo: string): string | undefined {
  const all = r.repoDigests.filter((d) => d.startsWith(`${repo}@`)).map((d) => d.slice(repo.length + 1));
  // the index's digest (what the repository's tag points at) before the manifest's
  return all.find((d) => d !== r.digest) ?? all[0];
}

export function familiarTagged(name: string): string {
  const { repo, tag } = splitTagged(name);
  return `${familiarRepo(repo)}:${tag}`;
}

export function displayName(r: ImageRecord): string {
  return r.names[0] ? familiarTagged(r.names[0]) : `<none>@${shortId(r.digest)}`;
}
