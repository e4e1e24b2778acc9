import { existsSync, writeSync } from 'node:fs';
import { StateError, TsrunError, UnsupportedError, UsageError } from '../errors.js';
import { canonicalName, familiarName, parseReference, repoName, type Reference } from './reference.js';
import { dockerCredentials, endpointsFor, RegistryClient, RegistryError, type ClientOptions } from './registry.js';
import { ContentStore, LAYER_TYPES, MEDIA, shortId, type Descriptor, type ImageRecord, type Manifest, type OciImageConfig } from './store.js';
import { importBuiltin, isBuiltin } from './builtin.js';
import { paceEnd, paceStart } from './gc-pace.js';
import type { ResolvedImage } from './types.js';
import { hostPlatform, pickPlatform } from './platform.js';

// `tsrun pull`: index → this host's manifest → config → layers (in parallel, each verified,
// then unpacked once by diff_id) → a name in the store. Nothing gets a name before all of
// its content is verified; partial files live in the store's tmp/ and are removed on failure.

export interface Progress {
  /** a layer: start, bytes so far, done */
  layer(id: string, total: number): void;
  update(id: string, n: number, state?: string): void;
  line(s: string): void;
  end(): void;
}

/** On a terminal: one line per layer redrawn in place; otherwise plain lines at milestones. */
export function progressReporter(fd: number, tty: boolean): Progress {
  const rows: { id: string; total: number; n: number; state: string; t0: number }[] = [];
  let drawn = 0;
  let last = 0;
  const fmt = (b: number) => (b >= 1 << 20 ? `${(b / (1 << 20)).toFixed(1)} MB` : `${(b / 1024).toFixed(1)} kB`);
  const draw = (force = false) => {
    const now = Date.now();
    if (!force && now - last < 100) return;
    last = now;
    let s = drawn ? `\x1b[${drawn}A` : '';
    for (const r of rows) {
      const secs = Math.max((now - r.t0) / 1000, 0.001);
      const detail = r.state === 'downloading' ? `${fmt(r.n)} / ${fmt(r.total)}  ${fmt(r.n / secs)}/s` : r.state;
      s += `\x1b[2K${r.id}: ${detail}\n`;
    }
    drawn = rows.length;
    writeSync(fd, s);
  };
  return {
    layer(id, total) {
      rows.push({ id, total, n: 0, state: 'waiting', t0: Date.now() });
      if (tty) draw(true);
    },
    update(id, n, state) {
      const r = rows.find((x) => x.id === id);
      if (!r) return;
      if (state === 'downloading' && r.state !== 'downloading') r.t0 = Date.now();
      r.n = n;
      const changed = state !== undefined && state !== r.state;
      if (state) r.state = state;
      if (tty) draw(changed);
      else if (changed && state !== 'downloading') writeSync(fd, `${id}: ${state}${state === 'downloaded' ? ` ${fmt(r.total)} in ${((Date.now() - r.t0) / 1000).toFixed(1)} s` : ''}\n`);
    },
    line(s) {
      // rows drawn so far stay on the screen as they are; the line goes below them
      writeSync(fd, `${s}\n`);
      rows.length = 0;
      drawn = 0;
    },
    end() {
      if (tty) draw(true);
    },
  };
}

const quiet: Progress = { layer() {}, update() {}, line() {}, end() {} };

export interface PullOptions extends ClientOptions {
  progress?: Progress;
  /** parallel layer downloads */
  parallel?: number;
  platform?: { os: string; architecture: string; variant?: string };
}

async function pool<T>(items: T[], n: number, fn: (t: T) => Promise<void>): Promise<void> {
  let i = 0;
  let failed: unknown;
  const worker = async () => {
    while (i < items.length && failed === undefined) {
      const t = items[i++]!;
      try {
        await fn(t);
      } catch (e) {
        failed ??= e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  if (failed !== undefined) throw failed;
}

export async function pull(store: ContentStore, input: string, opts: PullOptions = {}): Promise<ImageRecord> {
  paceStart();
  try {
    return await pullLeased(store, input, opts);
  } finally {
    paceEnd();
    store.releaseLease();
  }
}

async function pullLeased(store: ContentStore, input: string, opts: PullOptions): Promise<ImageRecord> {
  const ref = parseReference(input);
  const progress = opts.progress ?? quiet;
  const reference = ref.digest ?? ref.tag!;
  // Docker Hub images try each of "registry-mirrors" first, then Docker Hub, as docker does:
  // the first endpoint that serves the manifest serves the whole pull. A mirror gets only
  // credentials stored for its own host, never Docker Hub's.
  const failures: string[] = [];
  let client: RegistryClient | undefined;
  let m: Awaited<ReturnType<RegistryClient['manifest']>> | undefined;
  for (const ep of endpointsFor(ref, opts)) {
    const credentials = ep.mirror ? dockerCredentials(new URL(ep.mirror).host) : (opts.credentials ?? dockerCredentials(ref.registry));
    const o: ClientOptions = { ...opts };
    delete o.credentials;
    if (credentials) o.credentials = credentials;
    const c = new RegistryClient(ref, o, ep);
    try {
      m = await c.manifest(reference);
      client = c;
      break;
    } catch (e) {
      if (!(e instanceof RegistryError) || !ep.mirror) {
        if (failures.length && e instanceof TsrunError) throw new RegistryError(`${e.message} (after the mirrors failed: ${failures.join('; ')})`, { cause: e });
        throw e;
      }
      failures.push(e.message);
    }
  }
  if (!client || !m) throw new RegistryError(`${familiarName(ref)}: no endpoint served it`);
  let indexDigest: string | undefined;
  const index = [MEDIA.ociIndex, MEDIA.dockerList].includes(m.mediaType as never);
  if (index) {
    const list = JSON.parse(m.bytes.toString('utf8')) as { manifests?: Descriptor[] };
    const want = opts.platform ?? hostPlatform();
    const d = pickPlatform(list.manifests ?? [], want);
    if (!d) {
      const have = (list.manifests ?? []).map((x) => `${x.platform?.os}/${x.platform?.architecture}${x.platform?.variant ? `/${x.platform.variant}` : ''}`).filter((p) => p !== 'unknown/unknown');
      throw new UnsupportedError(`${familiarName(ref)}: no image for ${want.os}/${want.architecture} in its index (it has ${have.join(', ') || 'none'})`);
    }
    indexDigest = m.digest;
    m = await client.manifest(d.digest, d);
  }
  if (![MEDIA.ociManifest, MEDIA.dockerManifest].includes(m.mediaType as never)) throw new UnsupportedError(`${familiarName(ref)}: unsupported manifest media type ${JSON.stringify(m.mediaType)}`);
  const manifest = JSON.parse(m.bytes.toString('utf8')) as Manifest;
  if (!manifest.config?.digest || !Array.isArray(manifest.layers)) throw new RegistryError(`${familiarName(ref)}: manifest ${m.digest} lacks config or layers`);
  for (const l of manifest.layers) {
    if (!LAYER_TYPES.has(l.mediaType)) throw new UnsupportedError(`${familiarName(ref)}: layer ${shortId(l.digest)} has media type ${JSON.stringify(l.mediaType)}: not supported (foreign/non-distributable or not a tar layer)`);
  }
  const fetchBlob = async (d: Descriptor, label: string) => {
    if (store.hasBlob(d.digest)) {
      progress.update(label, d.size, 'already here');
      return;
    }
    const tmp = store.tmpPath('blob');
    progress.update(label, 0, 'downloading');
    await client.blob(d, tmp, (n) => progress.update(label, n));
    store.commitBlob(tmp, d.digest);
    progress.update(label, d.size, 'downloaded');
  };
  // config first: its diff_ids say what each layer must unpack to
  if (!store.hasBlob(manifest.config.digest)) {
    const tmp = store.tmpPath('blob');
    await client.blob(manifest.config, tmp);
    store.commitBlob(tmp, manifest.config.digest);
  }
  const config = JSON.parse(store.readBlob(manifest.config.digest).toString('utf8')) as OciImageConfig;
  const diffIds = config.rootfs?.diff_ids ?? [];
  if (diffIds.length !== manifest.layers.length) throw new RegistryError(`${familiarName(ref)}: config lists ${diffIds.length} layers, the manifest ${manifest.layers.length}: refused`);
  for (const l of manifest.layers) progress.layer(shortId(l.digest), l.size);
  const work = manifest.layers.map((l, i) => ({ l, diffId: diffIds[i]!, label: shortId(l.digest) }));
  // Downloads run side by side (they wait on the network); unpacks one at a time, in the
  // order their downloads end, as dockerd does (max-concurrent-downloads 3, extraction
  // serial). Unpacking is CPU and syscalls on this one thread, so two at once are no faster,
  // and each holds its own inflater, read buffers and tar state: four at once were ~8 MB of
  // a pull's peak RSS (67–70 against 59 MB, docs/images.md "Memory of a pull").
  let unpacks: Promise<void> = Promise.resolve();
  let failed: { e: unknown } | undefined;
  const unpackInTurn = ({ l, diffId, label }: (typeof work)[number]) => {
    unpacks = unpacks.then(async () => {
      if (failed) return;
      try {
        progress.update(label, l.size, 'unpacking');
        await store.ensureLayer(l.digest, diffId, label);
        progress.update(label, l.size, 'done');
      } catch (e) {
        failed ??= { e };
      }
    });
  };
  try {
    await pool(work, opts.parallel ?? 4, async (w) => {
      if (!store.hasBlob(w.l.digest) || !(await layerPresent(store, w.diffId))) await fetchBlob(w.l, w.label);
      if (failed) throw failed.e;
      unpackInTurn(w);
    });
  } catch (e) {
    failed ??= { e };
  }
  // a failed download still lets the unpack under way finish (its temporary directory is
  // removed or renamed whole); those not yet begun are skipped
  await unpacks;
  if (failed) throw failed.e;
  progress.end();
  store.writeBlob(m.bytes);
  const rec = await store.record({
    digest: m.digest,
    config: manifest.config.digest,
    layers: manifest.layers.map((l, i) => ({ digest: l.digest, size: l.size, mediaType: l.mediaType, diffId: diffIds[i]! })),
    names: ref.tag ? [canonicalName({ ...ref, digest: undefined } as Reference)] : [],
    repoDigests: [`${repoName(ref)}@${indexDigest ?? m.digest}`],
    source: 'pull',
    ...(config.created ? { created: config.created } : {}),
    platform: `${config.os ?? '?'}/${config.architecture ?? '?'}`,
  });
  progress.line(`Digest: ${m.digest}`);
  progress.line(`Status: downloaded ${familiarName(ref)}`);
  return rec;
}

async function layerPresent(store: ContentStore, diffId: string): Promise<boolean> {
  return existsSync(store.layerDir(diffId));
}

export type PullPolicy = 'missing' | 'always' | 'never';

export function parsePullPolicy(v: string | undefined): PullPolicy {
  const p = v ?? 'missing';
  if (p !== 'missing' && p !== 'always' && p !== 'never') throw new UsageError(`--pull ${JSON.stringify(v)}: one of missing, always, never`);
  return p;
}

/**
 * What `run` calls: the image from the store, pulled first when the policy says so. The
 * built-in busybox is imported (offline) instead of pulled when it is missing.
 */
export async function ensureImage(store: ContentStore, ref: string, policy: PullPolicy, opts: PullOptions = {}): Promise<ResolvedImage> {
  if (policy === 'always') {
    await pull(store, ref, opts);
    return store.resolve(ref);
  }
  try {
    return await store.resolve(ref);
  } catch (e) {
    if (!(e instanceof StateError) || policy === 'never') throw e;
  }
  if (isBuiltin(ref)) {
    await importBuiltin(store, ref);
    return store.resolve(ref);
  }
  const local = store.localNames();
  try {
    opts.progress?.line(`Unable to find image '${familiarName(parseReference(ref))}' locally`);
    await pull(store, ref, opts);
  } catch (e) {
    if (e instanceof TsrunError && !(e instanceof UsageError)) throw new StateError(`unknown image ${JSON.stringify(ref)}: local images: ${local}; pulling it failed: ${e.message}`, { cause: e });
    throw e;
  }
  return store.resolve(ref);
}
