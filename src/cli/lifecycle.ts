import { readFileSync, writeSync } from 'node:fs';
import { allocations, loadNetwork } from '../network/store.js';
import { NETWORK_ANNOTATION } from '../network/types.js';
import { inspectPorts, publishedPorts } from '../network/ports.js';
import { constants as osc } from 'node:os';
import type { Command } from 'commander';
import { StateError, TsrunError, UsageError } from '../errors.js';
import { validateProcessShape } from '../spec/bundle.js';
import { execInContainer, planExec, privilegeDiff } from '../runtime/exec.js';
import { planJson, renderPlan } from '../plan/render.js';
import { assertSocket } from './run.js';
import { features } from '../runtime/features.js';
import { parsePreserveFds as preserveFds } from './preserve-fds.js';
import type { Process } from '../spec/types.js';
import { lookupUser } from '../spec/users.js';
import { containerFileReader } from '../kernel/in-root.js';
import { containerPids, deleteContainer, exitOf, killContainer, monitorName, oomKilledOf, prune, removeOrphans, resolve, setFrozen, startCreated, unmonitoredNote, waitGone } from '../runtime/lifecycle.js';
import { followLog, logFile, readLog, tailLog, type LogRecord } from '../runtime/logs.js';
import type { Paths } from '../runtime/paths.js';
import { ellipsis, formatRows, goTime, humanDuration, row } from './format.js';
import { FILTER_KEYS, impliesAll, matches, parseFilters } from './ps-filter.js';
import { labelsOf } from './flags.js';
import { isBind } from '../controls/mounts.js';
import { IMAGE_ANNOTATION, imageInspectDoc, printInspect, storeOf } from './image.js';
import { findEntry, isAlive, listEntries, monitorGone, statusOf, type ContainerState, type Entry } from '../runtime/state.js';

// The verbs around a container's life: docker's (ps, logs, stop, kill -s, rm, wait,
// inspect) and the OCI runtime CLI's that engines call (create/start/state/kill/delete,
// ps --format json) on the same state directory.

const out = (s: string) => writeSync(1, s);

/**
 * `kill ID SIGNAL` is the OCI runtime CLI's form (engines always give the signal there);
 * `kill [-s SIG] ID...` is docker's. A second word that is a signal makes it the OCI form.
 */
export function killArgs(id: string, more: string[], flag: string | undefined): { ids: string[]; signal: NodeJS.Signals | number; oci: boolean } {
  if (flag === undefined && more.length === 1) {
    let sig: NodeJS.Signals | number | undefined;
    try {
      sig = parseSignal(more[0]!);
    } catch {
      sig = undefined;
    }
    if (sig !== undefined) return { ids: [id], signal: sig, oci: true };
  }
  return { ids: [id, ...more], signal: parseSignal(flag ?? 'TERM', '--signal'), oci: false };
}

export function parseSignal(v: string, flag = 'signal'): NodeJS.Signals | number {
  const up = v.toUpperCase();
  if (/^\d+$/.test(v)) {
    const n = Number(v);
    if (n < 1 || n > 64) throw new UsageError(`${flag} ${v}: not a signal number (1-64)`);
    return n;
  }
  const name = (up.startsWith('SIG') ? up : `SIG${up}`) as NodeJS.Signals;
  if (!(name in osc.signals)) throw new UsageError(`${flag} ${JSON.stringify(v)}: unknown signal (e.g. TERM, KILL, HUP, 9)`);
  return name;
}

/**
 * One container as ps shows it. A damaged state (unreadable, or not the shape tsrun writes)
 * is `damaged`, with the reason: its record may still name it; nothing else of it is trusted.
 */
export function describeEntry(paths: Paths, e: Entry) {
  if (e.ok) return describe(paths, e.state);
  return { id: e.id, name: e.record?.name ?? '', image: e.record?.image ?? '', command: '', created: e.record?.created ?? '', status: 'damaged' as const, pid: 0, exitCode: null, finishedAt: null, unmonitored: false, error: e.reason };
}

/**
 * `unmonitored`: a detached container whose tsrun-monitor was killed (issue 12.6): nobody
 * logs its output or will record its exit; `error` says so, or how its exit code was found.
 */
export function describe(paths: Paths, s: ContainerState) {
  const status = statusOf(s, paths);
  const exit = exitOf(paths, s, status);
  const unmonitored = status !== 'stopped' && status !== 'creating' && monitorGone(s, paths);
  const note = unmonitored ? unmonitoredNote(s) : exit.note;
  return {
    id: s.id,
    name: s.name ?? '',
    image: s.image ?? '',
    command: s.config.process.args.join(' '),
    created: s.created,
    status,
    pid: status === 'stopped' ? 0 : s.pid,
    exitCode: exit.exitCode,
    finishedAt: exit.finishedAt,
    unmonitored,
    error: note ?? null,
  };
}

/** docker inspect's NetworkSettings.Networks: the address host-local holds for the container (none once it exited). */
function networkSettings(p: Paths, s: ContainerState) {
  const name = s.annotations[NETWORK_ANNOTATION];
  if (!name) return { Networks: {}, Ports: {} };
  const def = loadNetwork(p.data, name);
  const a = allocations(p.data, name).find((x) => x.containerId === s.id);
  return {
    Networks: { [name]: { NetworkID: def?.id ?? '', IPAddress: a?.ip ?? '', IPPrefixLen: def ? Number(def.subnet.split('/')[1]) : 0, Gateway: def?.gateway ?? '' } },
    Ports: inspectPorts(publishedPorts(s)),
  };
}

export function ociState(s: ContainerState, paths?: Paths) {
  const status = statusOf(s, paths);
  return {
    ociVersion: s.ociVersion,
    id: s.id,
    status,
    pid: status === 'stopped' ? 0 : s.pid,
    bundle: s.bundle,
    rootfs: s.rootfs,
    created: s.created,
    owner: '',
    annotations: s.annotations,
  };
}

function statusText(d: ReturnType<typeof describeEntry>): string {
  if (d.status !== 'stopped') return d.unmonitored ? `${d.status} (unmonitored)` : d.status;
  return `Exited (${d.exitCode === null ? '?' : d.exitCode === -1 ? 'unknown' : d.exitCode}) ${ago(d.finishedAt)}`.trimEnd();
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]! + 3))).join('')).join('\n') + '\n';
}

function ago(iso: string | null): string {
  if (!iso) return '';
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  return s < 60 ? `${Math.round(s)} seconds ago` : s < 3600 ? `${Math.round(s / 60)} minutes ago` : `${Math.round(s / 3600)} hours ago`;
}

function collect(v: string, prev: string[] = []): string[] {
  return [...prev, v];
}

/** docker's State for tsrun's status (a damaged state is docker's "dead": nothing of it runs or is trusted). */
export function dockerState(status: string): string {
  return status === 'stopped' ? 'exited' : status === 'damaged' ? 'dead' : status === 'creating' ? 'created' : status;
}

function entryAnnotations(e: Entry): Record<string, string> | undefined {
  return e.ok ? e.state.annotations : e.record?.annotations;
}

/** `--filter ancestor=IMAGE`: the container was made from that image (by manifest digest, else by name). */
function ancestorMatcher(p: Paths): (e: Entry, value: string) => boolean {
  const wanted = new Map<string, string | undefined>();
  const store = storeOf(p);
  const digestOf = (v: string) => {
    if (!wanted.has(v)) {
      let d: string | undefined;
      try {
        d = store.find(v)?.digest;
      } catch {
        d = undefined;
      }
      wanted.set(v, d);
    }
    return wanted.get(v);
  };
  return (e, value) => {
    const s = e.ok ? e.state : e.record;
    if (!s) return false;
    const d = digestOf(value);
    if (d && s.annotations?.[IMAGE_ANNOTATION] === d) return true;
    return s.image === value;
  };
}

/** docker's Status column: "Up 3 seconds", "Exited (0) 2 minutes ago", "Created". */
function dockerStatus(d: ReturnType<typeof describeEntry>, started: string | undefined): string {
  const since = (iso: string | null | undefined) => humanDuration(Date.now() - (iso ? Date.parse(iso) : Date.now()));
  const note = d.unmonitored ? ' (unmonitored)' : '';
  switch (d.status) {
    case 'running':
      return `Up ${since(started ?? d.created)}${note}`;
    case 'paused':
      return `Up ${since(started ?? d.created)} (Paused)${note}`;
    case 'created':
    case 'creating':
      return 'Created';
    case 'stopped':
      return `Exited (${d.exitCode === null || d.exitCode === -1 ? 'unknown' : d.exitCode}) ${d.finishedAt ? `${since(d.finishedAt)} ago` : ''}`.trimEnd();
    default:
      return 'Dead';
  }
}

/** The fields of `ps --format`, named and shaped as docker's ({{json .}} prints them all). */
export function psRow(e: Entry, d: ReturnType<typeof describeEntry>, trunc: boolean) {
  const s = e.ok ? e.state : undefined;
  const labels = labelsOf(entryAnnotations(e));
  const netns = s?.config.linux.namespaces?.some((n) => n.type === 'network');
  const network = entryAnnotations(e)?.[NETWORK_ANNOTATION] ?? (s ? (netns ? 'none' : 'host') : '');
  return row({
    ID: trunc ? d.id.slice(0, 12) : d.id,
    Names: d.name,
    Image: d.image,
    Command: JSON.stringify(trunc ? ellipsis(d.command, 20) : d.command),
    CreatedAt: goTime(d.created),
    RunningFor: d.created ? `${humanDuration(Date.now() - Date.parse(d.created))} ago` : '',
    Ports: portsOf(e),
    State: dockerState(d.status),
    Status: dockerStatus(d, s?.started),
    Size: '0B',
    Labels: Object.keys(labels).sort().map((k) => `${k}=${labels[k]}`).join(','),
    Label: (k: unknown) => labels[String(k)] ?? '',
    Mounts: s ? userBinds(s).map((src) => (trunc ? ellipsis(src, 15) : src)).join(',') : '',
    Networks: network,
    LocalVolumes: '0',
  });
}

/** docker's PORTS column: 127.0.0.1:8080->80/tcp, ... */
function portsOf(e: Entry): string {
  return e.ok ? publishedPorts(e.state).map((m) => `${m.hostIP || '0.0.0.0'}:${m.hostPort}->${m.containerPort}/${m.protocol}`).join(', ') : '';
}

/**
 * docker's MOUNTS column lists a container's volumes and bind mounts by name or host path;
 * tsrun has no named volumes, so: the binds whose source is not a file tsrun generated in the
 * container's own directory (/etc/hostname, /etc/hosts, /etc/resolv.conf).
 */
function userBinds(s: ContainerState): string[] {
  const own = `${s.containerDir}/`;
  return (s.config.mounts ?? []).filter((m) => isBind(m) && m.source && !m.source.startsWith(own)).map((m) => m.source!);
}

const PS_HEADERS = {
  ID: 'CONTAINER ID',
  Names: 'NAMES',
  Image: 'IMAGE',
  Command: 'COMMAND',
  CreatedAt: 'CREATED AT',
  RunningFor: 'CREATED',
  Ports: 'PORTS',
  State: 'STATE',
  Status: 'STATUS',
  Size: 'SIZE',
  Labels: 'LABELS',
  Label: () => 'LABEL',
  Mounts: 'MOUNTS',
  Networks: 'NETWORKS',
  LocalVolumes: 'LOCAL VOLUMES',
};

/**
 * docker's rm/stop/kill of several containers: each in turn, its name (as given) printed once
 * done; one that fails is reported on stderr and the rest are still done, and the exit code
 * says something failed. A single container fails as any other command does.
 */
async function eachGiven(ids: string[], setExit: (code: number) => void, act: (id: string) => Promise<void>, print = true): Promise<void> {
  for (const id of ids) {
    try {
      await act(id);
    } catch (e) {
      if (ids.length === 1 || !(e instanceof TsrunError)) throw e;
      writeSync(2, `tsrun: ${e.message}\n`);
      setExit(e.exitCode);
      continue;
    }
    if (print) out(`${id}\n`);
  }
}

export function registerLifecycle(program: Command, paths: () => Paths, setExit: (code: number) => void): void {
  program
    .command('exec')
    .description('run a command in a running container: its namespaces, cgroup, seccomp filter; with a command, also its capabilities, no-new-privileges and rlimits (--process: those the file gives, as runc)')
    .argument('<id>', 'container id or name')
    .argument('[command...]', 'command and arguments (or --process)')
    .option('-i, --interactive', 'keep stdin open')
    .option('-t, --tty', 'allocate a terminal')
    .option('-u, --user <user[:group]>', 'user (name or uid) and group')
    .option('-e, --env <NAME=VALUE>', 'set an environment variable (repeatable)', collect)
    .option('-w, --workdir <dir>', 'working directory')
    .option('-d, --detach', 'do not wait for the command')
    .option('--privileged', 'give the command extended privileges (not supported: refused)')
    .option('-p, --process <file>', 'an OCI process.json (engines)')
    .option('--pid-file <file>', 'write the pid of the new process here')
    .option('--console-socket <path>', 'send the pty master to this unix socket (with --tty)')
    .option('--explain', 'print the plan and where the process is more privileged than the container\'s, and run nothing')
    .option('--json', 'with --explain: the plan as JSON')
    .option('--preserve-fds <n>', 'pass the caller\'s fds 3..3+N-1 to the process', preserveFds)
    .passThroughOptions()
    .action(async (id: string, command: string[], o: ExecCliOptions) => {
      setExit(await execVerb(paths(), id, command, o));
    });

  program
    .command('ps [id]')
    .alias('ls')
    .description('list containers (docker ps); with an ID, the pids inside it (OCI ps)')
    .option('-a, --all', 'include stopped containers')
    .option('-q, --quiet', 'only container ids')
    .option('--no-trunc', 'full ids and commands')
    .option('-f, --filter <key=value>', `only containers that match (repeatable): ${FILTER_KEYS.join(', ')} (docs/cli-format.md)`, collect)
    .option('--format <fmt>', 'table, json, or a Go template: \'{{.ID}} {{.Names}}\', \'table {{.ID}}\\t{{.Status}}\', \'{{json .}}\' (docs/cli-format.md)')
    .action(async (id: string | undefined, o: { all?: boolean; quiet?: boolean; trunc: boolean; filter?: string[]; format?: string }) => {
      await removeOrphans(paths());
      if (id) {
        // runc's `ps -f json ID`: there -f is --format (docker's -f is --filter, which lists no pids)
        const runcFormat = o.filter?.length === 1 && (o.filter[0] === 'json' || o.filter[0] === 'table') ? o.filter[0] : undefined;
        if (o.filter?.length && !runcFormat) throw new UsageError(`--filter ${JSON.stringify(o.filter[0])}: filters list containers; with a container ID, ps lists its pids (OCI ps)`);
        const format = o.format ?? runcFormat;
        if (format !== undefined && format !== 'table' && format !== 'json') throw new UsageError(`--format ${JSON.stringify(format)}: with a container ID (OCI ps), table or json`);
        const s = resolve(paths(), id);
        const pids = containerPids(s);
        if (format === 'json') out(JSON.stringify(pids) + '\n');
        else out(table([['PID', 'CMD'], ...pids.map((p) => [String(p), cmdline(p)])]));
        return;
      }
      const filters = parseFilters(o.filter);
      const all = o.all || impliesAll(filters);
      const ancestor = ancestorMatcher(paths());
      // before=/since= name containers: one that does not exist is an error, as docker's
      const refs = new Map([...(filters.get('before') ?? []), ...(filters.get('since') ?? [])].map((r) => [r, resolve(paths(), r).created]));
      const listed = listEntries(paths())
        .map((e) => ({ e, d: describeEntry(paths(), e) }))
        .filter(({ d }) => all || d.status !== 'stopped')
        .filter(({ e, d }) => matches(filters, { id: d.id, name: d.name, state: dockerState(d.status), labels: labelsOf(entryAnnotations(e)), exitCode: d.exitCode, ancestor: (v) => ancestor(e, v), created: d.created, createdOf: (r) => refs.get(r)! }))
        .sort((a, b) => b.d.created.localeCompare(a.d.created));
      const rows = listed.map(({ d }) => d);
      if (o.quiet) return void out(rows.map((d) => `${o.trunc ? d.id.slice(0, 12) : d.id}\n`).join(''));
      if (o.format === 'json') return void out(JSON.stringify(rows, null, 2) + '\n');
      const custom = o.format === undefined ? undefined : formatRows(o.format, listed.map(({ e, d }) => psRow(e, d, o.trunc)), PS_HEADERS);
      if (custom !== undefined) return void out(custom);
      out(
        table([
          // docker's columns; STATUS is tsrun's own words (running, "(unmonitored)", damaged)
          ['CONTAINER ID', 'IMAGE', 'COMMAND', 'CREATED', 'STATUS', 'PORTS', 'NAMES'],
          ...listed.map(({ e, d }) => [d.id.slice(0, 12), d.image, JSON.stringify(d.command.length > 20 ? d.command.slice(0, 19) + '…' : d.command), ago(d.created || null), statusText(d), portsOf(e), d.name]),
        ]),
      );
    });

  program
    .command('pause <ids...>')
    .description('freeze every process of containers (cgroup freezer)')
    .action(async (ids: string[]) => {
      for (const id of ids) await setFrozen(paths(), id, true);
    });

  program
    .command('unpause <ids...>')
    .alias('resume')
    .description('thaw paused containers (OCI resume)')
    .action(async (ids: string[]) => {
      for (const id of ids) await setFrozen(paths(), id, false);
    });

  program
    .command('state <id>')
    .description('the OCI state of a container (JSON)')
    .action((id: string) => void out(JSON.stringify(ociState(resolve(paths(), id), paths()), null, 2) + '\n'));

  program
    .command('start <id>')
    .description('start a created container (OCI start)')
    .action(async (id: string) => startCreated(paths(), id));

  program
    .command('kill <id> [more...]')
    .description('send a signal (default SIGTERM) to containers\' init, or with --all to every process in them: `kill [-s SIG] ID...` (docker: prints each ID) or `kill ID SIGNAL` (OCI: prints nothing)')
    .option('-s, --signal <sig>', 'signal name or number (docker style)')
    .option('-a, --all', 'every process of the container (OCI kill --all)')
    .action(async (id: string, more: string[], o: { signal?: string; all?: boolean }) => {
      const { ids, signal, oci } = killArgs(id, more, o.signal);
      // engines call the OCI form and read nothing from stdout; docker's form names what it signalled
      await eachGiven(ids, setExit, (x) => killContainer(paths(), x, signal, Boolean(o.all)), !oci);
    });

  program
    .command('delete <id>')
    .description('delete a container (OCI delete): its processes (with --force), mounts, cgroup, files and state')
    .option('-f, --force', 'kill it first if it runs')
    .action(async (id: string, o: { force?: boolean }) => {
      // engines call `delete --force` to clean up after a create that failed or a delete
      // that already ran (podman after a failed create, containerd's shim twice on exit):
      // as runc does, a forced delete of a container that does not exist is not an error
      try {
        await deleteContainer(paths(), id, Boolean(o.force));
      } catch (e) {
        if (!(o.force && e instanceof StateError && e.message.startsWith('no such container'))) throw e;
      }
    });

  program
    .command('rm <ids...>')
    .description('remove containers (docker rm)')
    .option('-f, --force', 'kill running containers first')
    .action(async (ids: string[], o: { force?: boolean }) => {
      // docker prints each container as it was named, once it is gone
      await eachGiven(ids, setExit, (id) => deleteContainer(paths(), id, Boolean(o.force)));
    });

  program
    .command('stop <ids...>')
    .description('SIGTERM, then SIGKILL after the grace period (docker stop)')
    .option('-t, --time <seconds>', 'grace period', '10')
    .action(async (ids: string[], o: { time: string }) => {
      const t = Number(o.time);
      if (!Number.isFinite(t) || t < 0) throw new UsageError(`--time ${JSON.stringify(o.time)}: a number of seconds`);
      await eachGiven(ids, setExit, async (id) => {
        const s = resolve(paths(), id);
        // as docker's: stopping a stopped container is not an error (its name is printed)
        if (statusOf(s) === 'stopped') return void (await removeOrphans(paths(), s.id));
        await killContainer(paths(), s.id, 'SIGTERM', false);
        if (!(await waitGone(s, t * 1000))) {
          await killContainer(paths(), s.id, 'SIGKILL', true).catch(() => undefined);
          await waitGone(s, 10_000);
        }
        const d = describe(paths(), s);
        if (d.error) writeSync(2, `tsrun: warning: ${s.name ?? s.id.slice(0, 12)}: ${d.error}\n`);
        // run -d --rm whose monitor is gone: nobody else will remove it
        await removeOrphans(paths(), s.id);
      });
    });

  program
    .command('wait <ids...>')
    .description('wait until containers stop; print their exit codes')
    .action(async (ids: string[]) => {
      for (const id of ids) {
        const s = resolve(paths(), id);
        await waitGone(s, Number.MAX_SAFE_INTEGER);
        const d = describe(paths(), s);
        if (d.error) writeSync(2, `tsrun: warning: ${s.name ?? s.id.slice(0, 12)}: ${d.error}\n`);
        await removeOrphans(paths(), s.id);
        out(`${d.exitCode ?? 'unknown'}\n`);
      }
    });

  program
    .command('logs <id>')
    .description('the output of a detached container (json-file log)')
    .option('-f, --follow', 'keep printing until the container stops')
    .option('--tail <n>', 'only the last N lines ("all" for every line)')
    .option('-t, --timestamps', 'prefix each line with its time')
    .action(async (id: string, o: { follow?: boolean; tail?: string; timestamps?: boolean }) => {
      const s = resolve(paths(), id);
      if (!s.monitorPid) throw new StateError(`container ${s.name ?? s.id.slice(0, 12)} has no log: only detached containers (run -d) are logged`);
      if (o.tail !== undefined && o.tail !== 'all' && !/^\d+$/.test(o.tail)) throw new UsageError(`--tail ${JSON.stringify(o.tail)}: a number of lines, or "all"`);
      const print = (l: LogRecord) => writeSync(l.stream === 'stderr' ? 2 : 1, (o.timestamps ? `${l.time} ` : '') + l.log);
      const warn = (m: string) => writeSync(2, `tsrun: warning: ${m}\n`);
      const file = logFile(paths(), s.id);
      const tail = o.tail === undefined || o.tail === 'all' ? undefined : Number(o.tail);
      // a killed monitor wrote nothing after its death: say where the log ends, and why
      const ended = () => {
        if (monitorGone(s, paths())) warn(`the log ends where ${monitorName(s)} is gone: the container's output after that was not logged`);
      };
      if (tail !== undefined) tailLog(file, tail, warn).forEach(print);
      if (!o.follow) {
        if (tail === undefined) readLog(file, print, warn);
        return ended();
      }
      if (tail === undefined) readLog(file, print, warn, true);
      await followLog(file, print, warn, () => statusOf(s) === 'stopped' || monitorGone(s, paths()), tail !== undefined);
      ended();
    });

  program
    .command('inspect <ids...>')
    .description('everything tsrun knows of containers (config, state, exit, as applied) or of images, as JSON')
    .option('-f, --format <template>', 'a Go template for each object, e.g. \'{{.State.Pid}}\', \'{{json .Config}}\' (docs/cli-format.md)')
    .option('--type <type>', 'container or image (default: a container, else an image of that name)')
    .action(async (ids: string[], o: { format?: string; type?: string }) => {
      if (o.type !== undefined && o.type !== 'container' && o.type !== 'image') throw new UsageError(`--type ${JSON.stringify(o.type)}: container or image`);
      await removeOrphans(paths());
      const docs = ids.map((id) => {
        // docker inspect takes containers and images alike: a container first, as docker does
        if (o.type !== 'container') {
          let missing: StateError | undefined;
          if (o.type !== 'image') {
            try {
              findEntry(paths(), id);
            } catch (e) {
              if (!(e instanceof StateError) || !e.message.startsWith('no such container')) throw e;
              missing = e;
            }
          }
          if (o.type === 'image' || missing) {
            const img = imageInspectDoc(storeOf(paths()), id);
            if (img) return img;
            if (o.type === 'image') throw new UsageError(`no such image ${JSON.stringify(id)}`);
            throw new StateError(`no such object: ${JSON.stringify(id)} is neither a container nor an image${missing!.message.includes('did you mean') ? ` (${missing!.message.replace(/^.*\((did you mean.*)\)$/, '$1')})` : ''}`);
          }
        }
        const e = findEntry(paths(), id);
        // a damaged state: what its record says, and why the rest is not shown
        if (!e.ok) {
          return { Id: e.id, Name: e.record?.name ?? '', Image: e.record?.image ?? '', Created: e.record?.created ?? null, State: { Status: 'damaged', Error: e.reason, Pid: 0, StartedAt: null, FinishedAt: null, ExitCode: null, OOMKilled: false }, Config: null };
        }
        const s = e.state;
        const d = describe(paths(), s);
        return {
          Id: s.id,
          Name: s.name ?? '',
          Image: s.image ?? '',
          Created: s.created,
          State: { Status: d.status, Pid: d.pid, StartedAt: s.started ?? null, FinishedAt: d.finishedAt, ExitCode: d.exitCode, OOMKilled: d.status === 'stopped' && oomKilledOf(s), ...(s.monitorPid ? { Unmonitored: d.unmonitored } : {}), ...(d.error ? { Error: d.error } : {}) },
          // as applied: what the plan gave the container's process (ids, capabilities, filters, limits)
          Process: { User: s.config.process.user, Capabilities: s.config.process.capabilities ?? null, NoNewPrivileges: Boolean(s.config.process.noNewPrivileges), Rlimits: s.config.process.rlimits ?? [], Seccomp: s.config.linux.seccomp ? { defaultAction: s.config.linux.seccomp.defaultAction, rules: s.config.linux.seccomp.syscalls?.length ?? 0 } : null },
          Mounts: (s.config.mounts ?? []).map((m) => ({ Destination: m.destination, Type: m.type ?? '', Source: m.source ?? '', Options: m.options ?? [] })),
          Resources: s.config.linux.resources ?? {},
          CgroupsPath: s.config.linux.cgroupsPath ?? null,
          Namespaces: s.config.linux.namespaces,
          NetworkSettings: networkSettings(paths(), s),
          IdMappings: { uid: s.config.linux.uidMappings ?? [], gid: s.config.linux.gidMappings ?? [] },
          ReadonlyRootfs: Boolean(s.config.root.readonly),
          Bundle: s.bundle,
          Rootfs: s.rootfs,
          Monitor: s.monitorPid ?? null,
          Config: s.config,
        };
      });
      printInspect(docs, o.format);
    });

  program
    .command('system')
    .description('housekeeping')
    .command('prune')
    .description('remove stopped containers and the data of containers whose state is gone (e.g. after a reboot)')
    .action(async () => {
      for (const id of await prune(paths(), (m) => writeSync(2, `tsrun: warning: ${m}\n`))) out(`${id}\n`);
    });

  program
    .command('features')
    .description('what this runtime supports (OCI runtime features, JSON)')
    .action(() => void out(JSON.stringify(features(), null, 2) + '\n'));
}

interface ExecCliOptions {
  interactive?: boolean;
  tty?: boolean;
  user?: string;
  env?: string[];
  workdir?: string;
  detach?: boolean;
  privileged?: boolean;
  process?: string;
  pidFile?: string;
  consoleSocket?: string;
  explain?: boolean;
  json?: boolean;
  preserveFds?: number;
}

async function execVerb(paths: Paths, id: string, command: string[], o: ExecCliOptions): Promise<number> {
  if (o.privileged) throw new UsageError('exec --privileged is not supported: a command gets exactly the container\'s privileges (an OCI --process file states its own)');
  let proc: Partial<Process> & { args: string[] };
  if (o.process) {
    if (command.length) throw new UsageError('exec: give either --process FILE or a command, not both');
    let json: unknown;
    try {
      json = JSON.parse(readFileSync(o.process, 'utf8'));
    } catch (e) {
      throw new UsageError(`--process ${o.process}: ${(e as Error).message}`, { cause: e });
    }
    const p = validateProcessShape(json, o.process);
    proc = { ...p, args: p.args, terminal: Boolean(p.terminal ?? o.tty) };
  } else {
    if (command.length === 0) throw new UsageError('exec needs a command (or --process FILE)');
    const s = resolve(paths, id);
    let user;
    if (o.user) {
      // the names come from the container's own files, read inside its root (a stopped
      // container's pid may be anyone's by now: ask only a running one)
      const status = statusOf(s);
      if (status !== 'running') throw new StateError(`container ${s.name ?? s.id.slice(0, 12)} is ${status}: exec needs a running container`);
      user = lookupUser(o.user, containerFileReader(s.pid), '--user', "the container's");
      // the files were read through /proc/<pid>/root: still the same init (start time), not a reused pid
      if (!isAlive(s)) throw new StateError(`container ${s.name ?? s.id.slice(0, 12)} stopped during exec`);
    }
    if (o.workdir !== undefined && !o.workdir.startsWith('/')) throw new UsageError(`--workdir ${JSON.stringify(o.workdir)}: must be an absolute path`);
    for (const e of o.env ?? []) if (!/^[^=\s]+=/.test(e)) throw new UsageError(`--env ${JSON.stringify(e)}: expected NAME=VALUE`);
    proc = {
      args: command,
      terminal: Boolean(o.tty),
      ...(o.env ? { env: o.env } : {}),
      ...(o.workdir ? { cwd: o.workdir } : {}),
      ...(user ? { user: { uid: user.uid, gid: user.gid, ...(user.additionalGids.length ? { additionalGids: user.additionalGids } : {}) } } : {}),
      ...(o.tty && process.stdout.isTTY ? { consoleSize: { height: process.stdout.rows, width: process.stdout.columns } } : {}),
    };
  }
  if (o.explain) return explainExec(paths, id, proc, Boolean(o.json));
  if (proc.terminal && o.detach && !o.consoleSocket) throw new UsageError('exec --detach --tty needs --console-socket');
  if (o.consoleSocket) assertSocket(o.consoleSocket, '--console-socket');
  return execInContainer({
    paths,
    ref: id,
    process: proc,
    interactive: Boolean(o.interactive),
    detach: Boolean(o.detach),
    ...(o.pidFile ? { pidFile: o.pidFile } : {}),
    ...(o.consoleSocket ? { consoleSocket: o.consoleSocket } : {}),
    ...(o.preserveFds ? { preserveFds: o.preserveFds } : {}),
  });
}

/**
 * `exec --explain`: the exec's plan, then what its process may do that the container's own
 * process may not. `--process` files are run as given (the OCI runtime CLI, as runc): an
 * engine may ask for more than the container has (docker exec --privileged, -u 0).
 */
function explainExec(paths: Paths, id: string, proc: Partial<Process> & { args: string[] }, json: boolean): number {
  const { plan, container } = planExec(paths, id, proc);
  const diff = privilegeDiff(container, plan.spec.process);
  if (json) {
    writeSync(1, JSON.stringify({ ...(planJson(plan) as object), moreThanContainer: diff }, null, 2) + '\n');
    return 0;
  }
  writeSync(1, renderPlan(plan));
  writeSync(
    1,
    diff.length
      ? `\ncompared with the container's process, this exec gets more:\n${diff.map((d) => `  - ${d}`).join('\n')}\n`
      : `\ncompared with the container's process: nothing more (same user, capabilities, no_new_privs, rlimits)\n`,
  );
  return 0;
}

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
  } catch {
    return '';
  }
}
