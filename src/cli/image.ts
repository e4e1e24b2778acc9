import { writeSync } from 'node:fs';
import type { Command } from 'commander';
import { UsageError } from '../errors.js';
import { applyChange, importPath } from '../image/import.js';
import { LocalStore } from '../image/local-store.js';
import { canonicalName, familiarRepo, parseReference, splitTagged } from '../image/reference.js';
import { displayName, familiarTagged, repoDigestFor, shortId, type ContentStore } from '../image/store.js';
import type { ImageConfig } from '../image/types.js';
import type { Paths } from '../runtime/paths.js';
import { listEntries } from '../runtime/state.js';
import { loadConfig } from '../config/index.js';
import { RegistryClient } from '../image/registry.js';
import { eraseCredentials, storeCredentials } from '../image/credentials.js';
import { DOCKER_HUB } from '../image/reference.js';
import { readFileSync } from 'node:fs';
import { addPullCommand, collect, registryOptions, storeOf } from './pull.js';
import { formatRows, goTime, humanDuration, humanSize, parseTemplate, row } from './format.js';

// The image verbs: pull, images, rmi, import, tag, image inspect|prune|ls|rm|pull|import|tag.

/** The annotation `run` puts on a container's spec: the manifest digest of its image. */
export const IMAGE_ANNOTATION = 'io.tsrun.image.digest';

const out = (s: string) => writeSync(1, s);

export { registryOptions, storeOf };

/** Manifest digests of the images containers (running or stopped) were made from. */
export function imagesInUse(paths: Paths, store: ContentStore): Set<string> {
  const used = new Set<string>();
  // a damaged state's record still names its image (a damaged record: that image is not known)
  for (const e of listEntries(paths)) {
    const s = e.ok ? e.state : e.record;
    if (!s) continue;
    const d = s.annotations?.[IMAGE_ANNOTATION];
    if (d) used.add(d);
    else if (s.image) {
      try {
        const r = store.find(s.image);
        if (r) used.add(r.digest);
      } catch {
        /* a name that no longer parses or is ambiguous */
      }
    }
  }
  return used;
}

const IMAGE_HEADERS = {
  ID: 'IMAGE ID',
  Repository: 'REPOSITORY',
  Tag: 'TAG',
  Digest: 'DIGEST',
  CreatedSince: 'CREATED',
  CreatedAt: 'CREATED AT',
  Size: 'SIZE',
  VirtualSize: 'VIRTUAL SIZE',
  SharedSize: 'SHARED SIZE',
  UniqueSize: 'UNIQUE SIZE',
  Containers: 'CONTAINERS',
};

function human(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}MB`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}kB`;
  return `${n}B`;
}

function ago(iso: string | undefined): string {
  if (!iso) return '';
  const s = (Date.now() - Date.parse(iso)) / 1000;
  if (!(s >= 0)) return iso;
  if (s < 60) return 'Less than a minute ago';
  if (s < 3600) return `${Math.round(s / 60)} minutes ago`;
  if (s < 86400 * 2) return `${Math.round(s / 3600)} hours ago`;
  return `${Math.round(s / 86400)} days ago`;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]! + 3))).join('')).join('\n') + '\n';
}

async function imagesVerb(o: { format?: string; quiet?: boolean; digests?: boolean; trunc?: boolean }, paths: Paths): Promise<number> {
  const store = storeOf(paths);
  const recs = store.records();
  const rows = recs.flatMap((r) =>
    (r.names.length ? r.names : ['<none>:<none>']).map((n) => {
      const { repo, tag } = n === '<none>:<none>' ? { repo: '<none>', tag: '<none>' } : splitTagged(n);
      // the digest this row's repository knows the image by, as docker's: never another repository's
      const digest = (repo !== '<none>' ? repoDigestFor(r, repo) : r.repoDigests[0]?.replace(/^.*@/, '')) ?? '<none>';
      return { repository: repo === '<none>' ? repo : familiarRepo(repo), tag, id: r.config, digest, manifest: r.digest, created: r.created ?? '', size: store.size(r), source: r.source, platform: r.platform ?? '' };
    }),
  );
  rows.sort((a, b) => a.repository.localeCompare(b.repository) || a.tag.localeCompare(b.tag));
  if (o.format === 'json') {
    out(JSON.stringify(rows, null, 2) + '\n');
    return 0;
  }
  const id = (full: string) => (o.trunc === false ? full : shortId(full));
  if (o.quiet) {
    out([...new Set(rows.map((r) => id(r.id)))].map((s) => `${s}\n`).join(''));
    return 0;
  }
  if (o.format !== undefined && o.format !== 'table') {
    const custom = formatRows(
      o.format,
      rows.map((r) =>
        row({
          ID: id(r.id),
          Repository: r.repository,
          Tag: r.tag,
          Digest: r.digest,
          CreatedSince: r.created ? `${humanDuration(Date.now() - Date.parse(r.created))} ago` : 'N/A',
          CreatedAt: goTime(r.created),
          Size: humanSize(r.size, 3),
          VirtualSize: humanSize(r.size, 4),
          SharedSize: 'N/A',
          UniqueSize: 'N/A',
          Containers: 'N/A',
        }),
      ),
      IMAGE_HEADERS,
    );
    if (custom !== undefined) return out(custom), 0;
  }
  const head = ['REPOSITORY', 'TAG', ...(o.digests ? ['DIGEST'] : []), 'IMAGE ID', 'CREATED', 'SIZE'];
  out(table([head, ...rows.map((r) => [r.repository, r.tag, ...(o.digests ? [r.digest] : []), shortId(r.id), ago(r.created), human(r.size)])]));
  return 0;
}

async function rmiVerb(refs: string[], o: { force?: boolean }, paths: Paths): Promise<number> {
  const store = storeOf(paths);
  for (const ref of refs) {
    const r = await store.remove(ref, Boolean(o.force), imagesInUse(paths, store));
    for (const u of r.untagged) out(`Untagged: ${u}\n`);
    if (r.deleted) out(`Deleted: ${r.deleted}\n`);
  }
  return 0;
}

async function importVerb(path: string, name: string | undefined, o: { change?: string[] }, paths: Paths): Promise<number> {
  const store = storeOf(paths);
  let cfg: ImageConfig = {};
  for (const c of o.change ?? []) cfg = applyChange(cfg, c);
  const recs = await importPath(store, path, name, cfg);
  for (const r of recs) out(`${r.names.length ? r.names.map(familiarTagged).join(' ') + ' ' : ''}${r.config}\n`);
  return 0;
}

/** docker image inspect's document of one image; undefined when the store has no such image. */
export function imageInspectDoc(store: LocalStore, ref: string) {
  const r = store.find(ref);
  if (!r) return undefined;
  const cfg = store.config(r);
  return {
    Id: r.config,
    RepoTags: r.names.map(familiarTagged),
    RepoDigests: r.repoDigests.map((d) => familiarRepo(d.slice(0, d.indexOf('@'))) + d.slice(d.indexOf('@'))),
    ManifestDigest: r.digest,
    Created: cfg.created ?? r.created ?? '',
    Architecture: cfg.architecture ?? '',
    Os: cfg.os ?? '',
    Config: cfg.config ?? {},
    RootFS: { Type: 'layers', Layers: cfg.rootfs?.diff_ids ?? [] },
    Size: store.size(r),
    Source: r.source,
    GraphDriver: { Name: 'overlay', Data: { LowerDirs: r.layers.map((l) => store.layerDir(l.diffId)) } },
  };
}

/** inspect's output: a JSON array, or with --format one line a document (docker's way). */
export function printInspect(docs: unknown[], format: string | undefined): void {
  if (format === undefined || format === '') return void out(JSON.stringify(docs, null, 2) + '\n');
  const t = parseTemplate(format, '--format');
  out(docs.map((d) => t.execute(d) + '\n').join(''));
}

async function inspectVerb(refs: string[], o: { format?: string }, paths: Paths): Promise<number> {
  const store = storeOf(paths);
  const res = [];
  for (const ref of refs) {
    const doc = imageInspectDoc(store, ref);
    if (!doc) throw new UsageError(`no such image ${JSON.stringify(ref)}: local images: ${store.localNames()}`);
    res.push(doc);
  }
  printInspect(res, o.format);
  return 0;
}

/** SERVER as docker login takes it: host[:port], maybe with a scheme or a path; none is Docker Hub. */
export function loginServer(arg: string | undefined): string {
  if (!arg) return DOCKER_HUB;
  let host = arg;
  if (/^https?:\/\//.test(arg)) {
    try {
      host = new URL(arg).host;
    } catch {
      throw new UsageError(`login: server ${JSON.stringify(arg)}: expected host[:port]`);
    }
  } else host = arg.split('/')[0]!;
  if (!/^[A-Za-z0-9.\-[\]:]+$/.test(host)) throw new UsageError(`login: server ${JSON.stringify(arg)}: expected host[:port]`);
  return ['docker.io', 'index.docker.io', 'registry-1.docker.io'].includes(host) ? DOCKER_HUB : host;
}

async function loginVerb(server: string | undefined, o: { username?: string; passwordStdin?: boolean; insecureRegistry?: string[]; config?: string }): Promise<number> {
  const registry = loginServer(server);
  // a password on the command line lands in shell history and /proc/PID/cmdline
  if (!o.passwordStdin) throw new UsageError('login: give the password on stdin with --password-stdin (tsrun takes no password as an argument)');
  if (!o.username) throw new UsageError('login: --username is required with --password-stdin');
  let password: string;
  try {
    password = readFileSync(0, 'utf8').replace(/\r?\n$/, '');
  } catch (e) {
    throw new UsageError(`login: --password-stdin: cannot read stdin: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
  }
  if (!password) throw new UsageError('login: --password-stdin: the password is empty');
  const client = new RegistryClient({ registry, repository: '' }, { ...registryOptions(o.insecureRegistry, loadConfig(o.config)), credentials: { username: o.username, password } });
  await client.checkLogin();
  const where = storeCredentials(registry, o.username, password);
  out(`Login Succeeded (credentials in ${where})\n`);
  return 0;
}

async function logoutVerb(server: string | undefined): Promise<number> {
  const registry = loginServer(server);
  out(eraseCredentials(registry) ? `Removing login credentials for ${registry}\n` : `Not logged in to ${registry}\n`);
  return 0;
}

async function pruneVerb(o: { all?: boolean }, paths: Paths): Promise<number> {
  const store = storeOf(paths);
  const r = await store.prune(imagesInUse(paths, store), Boolean(o.all));
  for (const d of r.deleted) out(`Deleted: ${d}\n`);
  out(`Total reclaimed space: ${human(r.reclaimed)}\n`);
  return 0;
}

export function registerImageCommands(program: Command, paths: () => Paths, setExit: (n: number) => void): void {
  const imagesCmd = (c: Command) =>
    c
      .description('list the images in the store')
      .option('--format <fmt>', 'table (default), json, or a Go template: \'{{.Repository}}:{{.Tag}}\', \'table {{.ID}}\\t{{.Size}}\' (docs/cli-format.md)')
      .option('-q, --quiet', 'only image ids')
      .option('--no-trunc', 'full image ids')
      .option('--digests', 'show manifest digests')
      .action(async (o) => setExit(await imagesVerb(o, paths())));
  const rmiCmd = (c: Command) =>
    c
      .description('remove images (refused while a container uses one, unless -f)')
      .argument('<image...>', 'name[:tag], name@digest or image id')
      .option('-f, --force', 'remove even if a container uses it (its layers stay until the container is gone)')
      .action(async (refs: string[], o) => setExit(await rmiVerb(refs, o, paths())));
  const importCmd = (c: Command) =>
    c
      .description('import an image: docker save tarball, OCI archive or layout dir, rootfs tarball or directory')
      .argument('<path>', 'file or directory')
      .argument('[name]', 'name[:tag] (needed for a plain root filesystem)')
      .option('-c, --change <instr>', 'CMD, ENTRYPOINT, ENV, WORKDIR, USER, as docker import (repeatable)', collect)
      .action(async (path: string, name: string | undefined, o) => setExit(await importVerb(path, name, o, paths())));

  const tagCmd = (c: Command) =>
    c
      .description('give an image another name')
      .argument('<source>', 'name, digest or id')
      .argument('<target>', 'new name[:tag]')
      .action(async (source: string, target: string) => {
        await storeOf(paths()).tag(source, target);
        setExit(0);
      });
  program
    .command('login')
    .description('log in to a registry: credentials into ~/.docker/config.json ("auths") or its credential helper, as docker login')
    .argument('[server]', 'host[:port] (default: Docker Hub)')
    .option('-u, --username <user>', 'user name')
    .option('--password-stdin', 'read the password from stdin')
    .option('--insecure-registry <host:port>', 'plain http for this registry', collect)
    .option('--config <file>', 'host-wide config: its "insecure-registries" (default /etc/tsrun/config.json, or $TSRUN_CONFIG)')
    .action(async (server: string | undefined, o) => setExit(await loginVerb(server, o)));
  program
    .command('logout')
    .description('remove a registry\'s credentials from ~/.docker/config.json or its credential helper')
    .argument('[server]', 'host[:port] (default: Docker Hub)')
    .action(async (server: string | undefined) => setExit(await logoutVerb(server)));
  addPullCommand(program.command('pull'), paths, setExit);
  tagCmd(program.command('tag'));
  imagesCmd(program.command('images'));
  rmiCmd(program.command('rmi'));
  importCmd(program.command('import'));
  const image = program.command('image').description('manage images (inspect, prune, ls, rm, pull, import)');
  image
    .command('inspect')
    .description('print an image\'s record and config as JSON')
    .argument('<image...>', 'name, digest or id')
    .option('-f, --format <template>', 'a Go template for each image, e.g. \'{{.Id}}\', \'{{json .Config}}\' (docs/cli-format.md)')
    .action(async (refs: string[], o: { format?: string }) => setExit(await inspectVerb(refs, o, paths())));
  image
    .command('prune')
    .description('remove images without a name that no container uses, and unreferenced layers')
    .option('-a, --all', 'also remove every image no container uses (not the built-in busybox)')
    .action(async (o) => setExit(await pruneVerb(o, paths())));
  imagesCmd(image.command('ls'));
  rmiCmd(image.command('rm'));
  addPullCommand(image.command('pull'), paths, setExit);
  importCmd(image.command('import'));
  tagCmd(image.command('tag'));
}

/** For `run --pull`: the canonical name the flag's image resolves to (for messages). */
export function canonical(ref: string): string {
  return canonicalName(parseReference(ref));
}

export { displayName };
