// User namespaces with a remapped root (user_namespaces(7); workshop control 2.8, CIS 2.8):
// uid 0 in the container is an unprivileged uid on the host, taken from a subordinate
// range in /etc/subuid and /etc/subgid (subuid(5)), as dockerd's userns-remap does.
import { childProcess } from '../builtins.js';
import { appendFileSync, closeSync, existsSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import * as op from '../plan/ops.js';
import { child } from '../plan/step.js';
import type { BuildContext, Control, ParentAction, ParentStep, Step } from '../plan/types.js';
import type { FlagDef } from '../spec/flag-types.js';
import type { IdMapping, Spec } from '../spec/types.js';
import { SpecError, UsageError } from '../errors.js';

/** The user `--userns-remap default` maps to (dockerd's is `dockremap`). */
export const DEFAULT_REMAP_USER = 'tsrun';
/** Container ids 0..65535 must be mapped: images own files up to 65534 (nobody). */
export const MIN_RANGE = 65536;
const FIRST_SUBID = 100000;
/** uid_t is 32 bits and (uid_t)-1 means "no change" to the kernel: the last usable id. */
const MAX_ID = 0xfffffffe;
const CAP_SETGID = 6n;

export interface SubIdEntry {
  /** user name, or a numeric uid/gid as text (subuid(5) allows both) */
  owner: string;
  start: number;
  count: number;
  line: number;
}

/** Where the account files live; tests pass a temp directory, never the host's /etc. */
export interface IdDb {
  passwd: string;
  group: string;
  subuid: string;
  subgid: string;
  /** useradd --prefix: the directory holding etc/ (absent = the host's /etc) */
  prefix?: string;
  /** creates a system user (default: useradd); unit tests pass a fake, since useradd needs root */
  addUser?: (name: string, db: IdDb) => void;
  /** where "created the user / wrote the range" is reported (default: stderr) */
  notice?: (msg: string) => void;
}

export const HOST_ID_DB: IdDb = {
  passwd: '/etc/passwd',
  group: '/etc/group',
  subuid: '/etc/subuid',
  subgid: '/etc/subgid',
};

export function idDbUnder(prefix: string): IdDb {
  return {
    passwd: join(prefix, 'etc/passwd'),
    group: join(prefix, 'etc/group'),
    subuid: join(prefix, 'etc/subuid'),
    subgid: join(prefix, 'etc/subgid'),
    prefix,
  };
}

// TSRUN_ID_PREFIX points at a directory whose etc/ holds passwd, group, subuid and subgid
// (useradd --prefix): tests use a copy so they never add a user to the host.
// Read when first needed, not at module load: the CLI's start-up snapshot runs module code
// at build time, and the environment that counts is the one tsrun runs in.
let chosenDb: IdDb | undefined;
const currentDb = (): IdDb => (chosenDb ??= process.env.TSRUN_ID_PREFIX ? idDbUnder(process.env.TSRUN_ID_PREFIX) : HOST_ID_DB);
/** Tests point the flag mappers at a copy of the account files. */
export function setIdDb(db: IdDb): void {
  chosenDb = db;
}

export function parseSubIds(text: string, path: string): SubIdEntry[] {
  const out: SubIdEntry[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (!line || line.startsWith('#')) return;
    const parts = line.split(':');
    const [owner, s, c] = parts;
    if (parts.length !== 3 || !owner || !/^\d+$/.test(s ?? '') || !/^\d+$/.test(c ?? ''))
      throw new UsageError(`${path}:${i + 1}: expected NAME:START:COUNT, got "${line}"`);
    out.push({ owner, start: Number(s), count: Number(c), line: i + 1 });
  });
  return out;
}

interface Account {
  name: string;
  id: number;
}

function parseAccounts(path: string): Account[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => l.split(':'))
    .filter((f) => f.length >= 3 && /^\d+$/.test(f[2] ?? ''))
    .map((f) => ({ name: f[0]!, id: Number(f[2]) }));
}

function readSubIds(path: string): SubIdEntry[] {
  return existsSync(path) ? parseSubIds(readFileSync(path, 'utf8'), path) : [];
}

/**
 * The ranges of `who` (by name or numeric id) turned into a mapping of container ids
 * 0..N-1, after checking each range and that none overlaps another range in the file
 * (two users sharing host ids could reach each other's files).
 */
export function rangesToMapping(entries: SubIdEntry[], who: Account, path: string): IdMapping[] {
  const mine = entries.filter((e) => e.owner === who.name || e.owner === String(who.id));
  if (mine.length === 0) throw new UsageError(`${path}: no subordinate ids for "${who.name}" (add a line ${who.name}:START:COUNT)`);
  const where = (e: SubIdEntry) => `${path}:${e.line}`;
  for (const e of mine) {
    if (e.count === 0) throw new UsageError(`${where(e)}: range of "${e.owner}" is empty`);
    if (e.start + e.count - 1 > MAX_ID)
      throw new UsageError(`${where(e)}: range ${e.start}+${e.count} overflows the 32-bit id space (last id ${MAX_ID})`);
    if (e.start === 0) throw new UsageError(`${where(e)}: range of "${e.owner}" starts at 0: container root would be host root`);
    for (const o of entries) {
      if (o === e) continue;
      if (o.start < e.start + e.count && e.start < o.start + o.count)
        throw new UsageError(`${where(e)}: range ${e.start}+${e.count} overlaps ${o.owner}:${o.start}:${o.count} (${path}:${o.line})`);
    }
  }
  const total = mine.reduce((n, e) => n + e.count, 0);
  if (total < MIN_RANGE)
    throw new UsageError(`${path}: "${who.name}" has ${total} subordinate ids; at least ${MIN_RANGE} are needed (container ids 0-65535)`);
  let next = 0;
  return mine.map((e) => {
    const m = { containerID: next, hostID: e.start, size: e.count };
    next += e.count;
    return m;
  });
}

/** First start >= 100000 where `count` ids fit after every existing range (dockerd's rule). */
export function nextFreeStart(entries: SubIdEntry[], count = MIN_RANGE): number {
  let start = FIRST_SUBID;
  for (const e of [...entries].sort((a, b) => a.start - b.start)) {
    if (e.start + e.count <= start) continue;
    if (e.start >= start + count) break;
    start = e.start + e.count;
  }
  return start;
}

/**
 * `PATH.lock`, created exclusively: the lock file shadow's tools (useradd, usermod) take on
 * the same files, so two tsruns, or tsrun and usermod, never pick the same free range.
 */
function withLock(path: string, fn: () => void): void {
  const lock = `${path}.lock`;
  for (let i = 0; ; i++) {
    try {
      closeSync(openSync(lock, 'wx', 0o600));
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || i >= 100)
        throw new UsageError(`--userns-remap: cannot lock ${lock}: ${(e as NodeJS.ErrnoException).code ?? String(e)}${i >= 100 ? ' (held for 5 s; remove it if no useradd/usermod is running)' : ''}`, { cause: e });
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
    }
  }
  try {
    fn();
  } finally {
    rmSync(lock, { force: true });
  }
}

/** useradd(8) of a system user without home or login shell, into db.prefix when given. */
export function useradd(name: string, db: IdDb): void {
  const args = ['--system', '--no-create-home', '--user-group', '--shell', '/usr/sbin/nologin'];
  if (db.prefix) args.push('--prefix', db.prefix);
  try {
    childProcess().execFileSync('useradd', [...args, name], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    const msg = (e as { stderr?: Buffer }).stderr?.toString().trim() || String(e);
    throw new UsageError(`--userns-remap default: could not create user "${name}": ${msg}`, { cause: e });
  }
}

/**
 * Creates the `tsrun` system user (no home, no login shell) with useradd, and a free
 * range of 65536 ids in both subuid and subgid files, when they are missing.
 * dockerd does the same for `dockremap` when userns-remap=default.
 */
export function ensureDefaultUser(db: IdDb, planOnly = false): Projected | undefined {
  if (planOnly) return projectDefaultUser(db);
  const did: string[] = [];
  if (!parseAccounts(db.passwd).some((a) => a.name === DEFAULT_REMAP_USER)) {
    (db.addUser ?? useradd)(DEFAULT_REMAP_USER, db);
    const uid = parseAccounts(db.passwd).find((a) => a.name === DEFAULT_REMAP_USER)?.id;
    did.push(`created the system user "${DEFAULT_REMAP_USER}"${uid !== undefined ? ` (uid ${uid})` : ''} in ${db.passwd}`);
  }
  for (const path of [db.subuid, db.subgid]) {
    withLock(path, () => {
      const entries = readSubIds(path);
      if (entries.some((e) => e.owner === DEFAULT_REMAP_USER)) return;
      const line = `${DEFAULT_REMAP_USER}:${nextFreeStart(entries)}:${MIN_RANGE}\n`;
      if (existsSync(path)) {
        const text = readFileSync(path, 'utf8');
        appendFileSync(path, text && !text.endsWith('\n') ? `\n${line}` : line);
      } else writeFileSync(path, line, { mode: 0o644 });
      did.push(`wrote "${line.trim()}" to ${path}`);
    });
  }
  // dockerd creates dockremap silently; a learner should see what changed on the host
  if (did.length) (db.notice ?? noticeToStderr)(`--userns-remap default: ${did.join('; ')} (container root will be host uid ${readSubIds(db.subuid).find((e) => e.owner === DEFAULT_REMAP_USER)?.start ?? '?'})`);
  return undefined;
}

/** The sub-id files as a run would leave them, when the default user or its ranges are missing. */
interface Projected {
  subuid: SubIdEntry[];
  subgid: SubIdEntry[];
}

/**
 * What ensureDefaultUser would do, without doing it: a plan (`explain`, `run --dry-run`)
 * must not add a user to the host's account files, yet it should show the mapping the run
 * would get. The uid useradd would pick is not known in advance, and the plan needs none.
 */
function projectDefaultUser(db: IdDb): Projected | undefined {
  const would: string[] = [];
  if (!parseAccounts(db.passwd).some((a) => a.name === DEFAULT_REMAP_USER)) would.push(`create the system user "${DEFAULT_REMAP_USER}" in ${db.passwd}`);
  const [subuid, subgid] = [db.subuid, db.subgid].map((path) => {
    const entries = readSubIds(path);
    if (entries.some((e) => e.owner === DEFAULT_REMAP_USER)) return entries;
    const start = nextFreeStart(entries);
    would.push(`write "${DEFAULT_REMAP_USER}:${start}:${MIN_RANGE}" to ${path}`);
    return [...entries, { owner: DEFAULT_REMAP_USER, start, count: MIN_RANGE, line: entries.reduce((n, e) => Math.max(n, e.line), 0) + 1 }];
  }) as [SubIdEntry[], SubIdEntry[]];
  if (!would.length) return undefined;
  (db.notice ?? noticeToStderr)(`--userns-remap default (plan only): a run would ${would.join('; ')} (container root would be host uid ${subuid.find((e) => e.owner === DEFAULT_REMAP_USER)?.start ?? '?'})`);
  return { subuid, subgid };
}

function noticeToStderr(msg: string): void {
  process.stderr.write(`tsrun: ${msg}\n`);
}

export interface Remap {
  user: string;
  group: string;
  uidMappings: IdMapping[];
  gidMappings: IdMapping[];
}

function findAccount(list: Account[], who: string, kind: string, path: string): Account {
  const a = list.find((x) => x.name === who) ?? (/^\d+$/.test(who) ? list.find((x) => x.id === Number(who)) : undefined);
  if (a) return a;
  if (/^\d+$/.test(who)) return { name: who, id: Number(who) };
  throw new UsageError(`--userns-remap: no ${kind} "${who}" in ${path}`);
}

/** `default` or `USER[:GROUP]` → the mappings (creating the default user if needed). */
export function resolveRemap(value: string, db: IdDb = currentDb(), planOnly = false): Remap {
  const v = value.trim();
  if (!v) throw new UsageError('--userns-remap: expected "default" or USER[:GROUP]');
  const parts = v.split(':');
  if (parts.length > 2 || parts.some((p) => !p)) throw new UsageError(`--userns-remap: expected "default" or USER[:GROUP], got "${value}"`);
  let [user, group] = parts as [string, string | undefined];
  let projected: Projected | undefined;
  if (user === 'default') {
    projected = ensureDefaultUser(db, planOnly);
    user = DEFAULT_REMAP_USER;
  }
  // a planned default user is not in passwd yet: its ranges are found by name
  const planned = (list: Account[], who: string): Account[] => (projected && !list.some((a) => a.name === who) ? [...list, { name: who, id: -1 }] : list);
  const u = findAccount(planned(parseAccounts(db.passwd), user), user, 'user', db.passwd);
  const g = findAccount(planned(parseAccounts(db.group), group ?? u.name), group ?? u.name, 'group', db.group);
  return {
    user: u.name,
    group: g.name,
    uidMappings: rangesToMapping(projected?.subuid ?? readSubIds(db.subuid), u, db.subuid),
    gidMappings: rangesToMapping(projected?.subgid ?? readSubIds(db.subgid), g, db.subgid),
  };
}

export const REMAP_ANNOTATION = 'io.tsrun.userns-remap';

export function hasUserNamespace(spec: Spec): boolean {
  return spec.linux.namespaces.some((n) => n.type === 'user');
}

export function applyRemap(spec: Spec, r: Remap): void {
  if (!hasUserNamespace(spec)) spec.linux.namespaces.push({ type: 'user' });
  spec.linux.uidMappings = r.uidMappings;
  spec.linux.gidMappings = r.gidMappings;
  spec.annotations = { ...spec.annotations, [REMAP_ANNOTATION]: `${r.user}:${r.group}` };
}

export function removeUserNamespace(spec: Spec): void {
  spec.linux.namespaces = spec.linux.namespaces.filter((n) => n.type !== 'user');
  delete spec.linux.uidMappings;
  delete spec.linux.gidMappings;
  if (spec.annotations) delete spec.annotations[REMAP_ANNOTATION];
}

/** Host id that container id `id` maps to, or undefined when unmapped. */
export function toHostId(maps: IdMapping[] | undefined, id: number): number | undefined {
  const m = (maps ?? []).find((x) => id >= x.containerID && id < x.containerID + x.size);
  return m ? m.hostID + (id - m.containerID) : undefined;
}

export function mapFileContent(maps: IdMapping[]): string {
  return maps.map((m) => `${m.containerID} ${m.hostID} ${m.size}\n`).join('');
}

/** One id_map file's lines (user_namespaces(7)): "inside outside count" triples, sorted. */
export function parseMapFile(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.trim().split(/\s+/).join(' '))
    .filter(Boolean)
    .sort();
}

let readMap: (file: string) => string | undefined = (file) => {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
};
/** Tests fake the maps of a joined namespace. */
export function setReadMap(f: typeof readMap): void {
  readMap = f;
}

/**
 * A joined user namespace has its maps already: the spec's may only repeat them. runc refuses
 * a path with mappings that differ ("both namespace path and non-matching mapping specified")
 * and accepts matching ones, since containerd and CRI-O write both. tsrun can read the maps
 * beside a /proc/PID/ns/user path (a proc file, not container content); for another path (a
 * bind-mounted nsfs file) it could only learn them from inside, which no host process enters
 * (design rule 1), so mappings with such a path are refused.
 */
function checkJoinedMappings(s: Spec, path: string): void {
  if (!s.linux.uidMappings?.length && !s.linux.gidMappings?.length) return;
  const m = /^\/proc\/([1-9][0-9]*)\/ns\/user$/.exec(path);
  if (!m) throw new SpecError('linux.uidMappings', `a user namespace joined by path (${path}) keeps its own maps: leave linux.uidMappings and linux.gidMappings out`);
  for (const [field, file] of [['linux.uidMappings', 'uid_map'], ['linux.gidMappings', 'gid_map']] as const) {
    const given = (field === 'linux.uidMappings' ? s.linux.uidMappings : s.linux.gidMappings) ?? [];
    const text = readMap(`/proc/${m[1]}/${file}`);
    if (text === undefined) throw new SpecError(field, `cannot read /proc/${m[1]}/${file} to compare with the joined user namespace ${path}`);
    const want = parseMapFile(mapFileContent(given));
    if (parseMapFile(text).join(';') !== want.join(';'))
      throw new SpecError(field, `does not match /proc/${m[1]}/${file} of the user namespace joined by path (${parseMapFile(text).join('; ')}): give the path or the mappings, not both`);
  }
}

// The uid_map/gid_map rules of user_namespaces(7) the kernel enforces with EINVAL/EPERM,
// checked here so the error names the field instead of "write uid_map: EINVAL".
function checkMappings(maps: IdMapping[] | undefined, field: string): void {
  if (!maps || maps.length === 0) throw new SpecError(field, 'a user namespace needs at least one mapping');
  if (maps.length > 340) throw new SpecError(field, `${maps.length} ranges; the kernel accepts at most 340`);
  maps.forEach((m, i) => {
    const f = `${field}[${i}]`;
    for (const k of ['containerID', 'hostID', 'size'] as const)
      if (!Number.isInteger(m[k]) || m[k] < 0) throw new SpecError(`${f}.${k}`, `must be a non-negative integer`);
    if (m.size === 0) throw new SpecError(`${f}.size`, 'must be at least 1');
    if (m.containerID + m.size - 1 > MAX_ID || m.hostID + m.size - 1 > MAX_ID)
      throw new SpecError(f, `range overflows the 32-bit id space`);
    maps.slice(0, i).forEach((o, j) => {
      if (o.containerID < m.containerID + m.size && m.containerID < o.containerID + o.size)
        throw new SpecError(f, `container ids overlap ${field}[${j}]`);
    });
  });
}

export const flags: FlagDef[] = [
  {
    syntax: '--userns-remap <default|user[:group]>',
    help: 'run in a user namespace: container root is a subordinate id of USER (default: the tsrun user)',
    docker: 'dockerd --userns-remap',
    control: 'userns',
    apply(spec, value, env) {
      applyRemap(spec, resolveRemap(String(value), undefined, env.planOnly));
    },
  },
  {
    syntax: '--userns <mode>',
    help: '"host" runs without a user namespace even when the config file sets userns-remap',
    docker: '--userns',
    control: 'userns',
    apply(spec, value) {
      if (value !== 'host') throw new UsageError(`--userns: only "host" is supported, got "${String(value)}" (use --userns-remap)`);
      removeUserNamespace(spec);
    },
  },
];

function parentStep(a: ParentAction, text: string, why: string, phase: ParentStep['phase'] = 'after-clone'): ParentStep {
  return { ...a, where: 'parent', phase, control: 'userns', text, why };
}

/** A user namespace tsrun creates (not one it joins). */
function newUserNs(spec: Spec): boolean {
  return spec.linux.namespaces.some((n) => n.type === 'user' && !n.path);
}

/** Where layer `i` is mounted, idmapped, in the container's mount namespace only. */
export function idmapLayerDir(ctx: BuildContext, i: number): string {
  return join(ctx.containerDir, 'idmap', String(i));
}

/**
 * The overlay's lower directories (lowest first). With a remapped root they are idmapped
 * copies of the image layers, so a file owned by uid 0 in the image is owned by the
 * container's root (host uid 100000) inside, without chown-ing a copy of the image:
 * overlayfs itself cannot be idmapped (mount_setattr EINVAL), its layers can.
 */
export function overlayLowerDirs(ctx: BuildContext): string[] {
  if (!ctx.overlay) return [];
  return newUserNs(ctx.spec) ? ctx.overlay.lower.map((_, i) => idmapLayerDir(ctx, i)) : ctx.overlay.lower;
}

let statMode: (p: string) => number | undefined = (p) => {
  try {
    return statSync(p).mode & 0o7777;
  } catch {
    return undefined;
  }
};
/** Tests fake the host's directory modes. */
export function setStatMode(f: (p: string) => number | undefined): void {
  statMode = f;
}

/**
 * Prepare steps so the remapped root (an unprivileged uid on the host) can reach its
 * directories: search permission (o+x, no listing) on the ancestors of the container
 * directory, and ownership of the container directory and the overlay's upper and work
 * directories (overlayfs creates files there with the mounter's ids).
 */
function remapDirSteps(ctx: BuildContext, uid: number, gid: number): ParentStep[] {
  const steps: ParentStep[] = [];
  const why = `host uid ${uid} (container root) must be able to reach its layers: search only, no listing`;
  const ancestors: string[] = [];
  for (let d = dirname(ctx.containerDir); d !== '/' && d !== '.'; d = dirname(d)) ancestors.unshift(d);
  const parentDir = ancestors.at(-1);
  if (parentDir) steps.push(parentStep({ action: 'mkdir', path: parentDir, mode: 0o711 }, `mkdir -p ${parentDir} (mode 711)`, why, 'prepare'));
  for (const d of ancestors) {
    const mode = statMode(d);
    if (mode !== undefined && !(mode & 0o001))
      steps.push(parentStep({ action: 'chown', path: d, uid: -1, gid: -1, mode: mode | 0o001 }, `chmod o+x ${d}`, why, 'prepare'));
  }
  const own = [ctx.containerDir, ...(ctx.overlay ? [ctx.overlay.upper, ctx.overlay.work] : [])];
  for (const d of [...own, ...(ctx.overlay ? [ctx.rootfs] : [])])
    steps.push(parentStep({ action: 'mkdir', path: d, mode: d === ctx.containerDir ? 0o700 : 0o755 }, `mkdir -p ${d}`, 'created here so it can be handed to the remapped root', 'prepare'));
  for (const d of own)
    steps.push(
      parentStep(
        { action: 'chown', path: d, uid, gid },
        `chown ${uid}:${gid} ${d}`,
        d === ctx.overlay?.upper ? `the container's / and every file it writes belong to its root, host uid ${uid}` : `owned by the container's root, host uid ${uid}`,
        'prepare',
      ),
    );
  ctx.overlay?.lower.forEach((_, i) => {
    const d = idmapLayerDir(ctx, i);
    steps.push(parentStep({ action: 'mkdir', path: d, mode: 0o755 }, `mkdir -p ${d}`, `mount point for image layer ${i}, idmapped (only in the container's mount namespace)`, 'prepare'));
  });
  return steps;
}

export const control: Control = {
  id: 'userns',
  title: 'User namespace with remapped root',
  ref: 'CIS 2.8 (enable user namespace support), workshop lab 5',
  validate(ctx: BuildContext): void {
    const s = ctx.spec;
    if (!hasUserNamespace(s)) {
      if (s.linux.uidMappings?.length || s.linux.gidMappings?.length)
        throw new SpecError('linux.uidMappings', 'mappings given but no user namespace in linux.namespaces');
      return;
    }
    const ns = s.linux.namespaces.find((n) => n.type === 'user');
    if (ns?.path) {
      checkJoinedMappings(s, ns.path);
      return;
    }
    checkMappings(s.linux.uidMappings, 'linux.uidMappings');
    checkMappings(s.linux.gidMappings, 'linux.gidMappings');
    // The host's network namespace belongs to the host's user namespace: a remapped root
    // cannot mount sysfs for it (EPERM), nor configure it. docker refuses the pair too.
    if (!s.linux.namespaces.some((n) => n.type === 'network'))
      throw new SpecError('linux.namespaces', 'a user namespace cannot share the host\'s network namespace (--network host): add --userns host');
    // tsrun sets the container up as the namespace's root (native/spawn.h, MSG_ID_MAPPED)
    if (toHostId(s.linux.uidMappings, 0) === undefined) throw new SpecError('linux.uidMappings', 'container uid 0 must be mapped (tsrun sets the container up as its root)');
    if (toHostId(s.linux.gidMappings, 0) === undefined) throw new SpecError('linux.gidMappings', 'container gid 0 must be mapped (tsrun sets the container up as its root)');
    const { uid, gid } = s.process.user;
    if (toHostId(s.linux.uidMappings, uid) === undefined)
      throw new SpecError('process.user.uid', `${uid} is not mapped by linux.uidMappings`);
    if (toHostId(s.linux.gidMappings, gid) === undefined)
      throw new SpecError('process.user.gid', `${gid} is not mapped by linux.gidMappings`);
  },
  steps(ctx: BuildContext): Step[] {
    const s = ctx.spec;
    const ns = s.linux.namespaces.find((n) => n.type === 'user');
    if (!ns || ns.path) return [];
    const steps: Step[] = [];
    // The parent writes the maps as host root (it holds CAP_SETUID/CAP_SETGID over the new
    // namespace), which the kernel trusts with any range; only a writer without
    // CAP_SETGID must first deny setgroups (user_namespaces(7), CVE-2014-8989).
    if (!((ctx.host.capEff >> CAP_SETGID) & 1n)) {
      steps.push(
        parentStep(
          { action: 'id-map', file: 'setgroups', content: 'deny' },
          'write /proc/<pid>/setgroups "deny"',
          'user_namespaces(7): gid_map may only be written without CAP_SETGID once setgroups is denied (CVE-2014-8989)',
        ),
      );
    }
    const hostUid = toHostId(s.linux.uidMappings, 0);
    const hostGid = toHostId(s.linux.gidMappings, 0);
    if (hostUid !== undefined && hostGid !== undefined) steps.unshift(...remapDirSteps(ctx, hostUid, hostGid));
    const uid = mapFileContent(s.linux.uidMappings ?? []);
    const gid = mapFileContent(s.linux.gidMappings ?? []);
    steps.push(
      parentStep(
        { action: 'id-map', file: 'uid_map', content: uid },
        `write /proc/<pid>/uid_map "${uid.trim().replace(/\n/g, '; ')}"`,
        `container uid 0 is host uid ${toHostId(s.linux.uidMappings, 0) ?? 'unmapped'}: root inside is unprivileged outside (CIS 2.8)`,
      ),
      parentStep(
        { action: 'id-map', file: 'gid_map', content: gid },
        `write /proc/<pid>/gid_map "${gid.trim().replace(/\n/g, '; ')}"`,
        'then MSG_ID_MAPPED: before it execs tsrun-init the child takes uid/gid 0 of its namespace (host root is unmapped there, and an execve by an unmapped uid drops every capability)',
      ),
    );
    if (ctx.overlay) {
      steps.push(child('mounts', 'userns', 'the idmapped layers below must not propagate to the host', op.mount('', '/', '', ['REC', 'PRIVATE'])));
      ctx.overlay.lower.forEach((layer, i) => {
        steps.push(
          parentStep(
            { action: 'send-mount-fd', source: layer, idmapUserns: true, recursive: false },
            `open_tree(${layer}, OPEN_TREE_CLONE); mount_setattr(MOUNT_ATTR_IDMAP, userns of the child) → MSG_MOUNT_FD`,
            `image layer ${i} seen through the container's id map: its uid 0 files are owned by the container's root, the image itself is untouched`,
          ),
          child('mounts', 'userns', `idmapped image layer ${i}, a lower layer of the overlay`, op.mountFd(idmapLayerDir(ctx, i))),
        );
      });
    }
    return steps;
  },
};
