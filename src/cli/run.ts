import { randomBytes } from 'node:crypto';
import { existsSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { describeError } from '../kernel/errno.js';
import { join, resolve as resolvePath } from 'node:path';
import type { Command } from 'commander';
import { UsageError } from '../errors.js';
import { ensureImage, parsePullPolicy, progressReporter } from '../image/pull.js';
import { IMAGE_ANNOTATION, registryOptions, storeOf } from './image.js';
import { buildPlan } from '../plan/build.js';
import { planJson, renderPlan } from '../plan/render.js';
import { renderSummary, summarize } from '../plan/summary.js';
import type { BuildContext, Plan } from '../plan/types.js';
import { loadBundle } from '../spec/bundle.js';
import type { FlagDef } from '../spec/flag-types.js';
import { specFromFlags, type RunOptions } from '../spec/from-flags.js';
import { detectHost } from '../runtime/host.js';
import { containerDir, defaultPaths, imagesDir, type Paths } from '../runtime/paths.js';
import { attachAndWait, cleanup, dueAtExit, forwardSignals } from '../runtime/run.js';
import { launch } from '../runtime/lifecycle.js';
import { logOptsFrom } from '../runtime/logs.js';
import { exitFile, listEntries, listStates, nameOf, removeState, stateDirOf, withLock } from '../runtime/state.js';
import { withGeneratedName } from './names.js';
import { PROJECT_ROOT } from '../kernel/native.js';
import { imageFileReader } from '../kernel/in-root.js';
import { RUN_FLAGS, withImageLabels } from './flags.js';
import { DEFAULT_CONFIG_PATH, configRlimitError, loadConfig, rlimitConfigKey, type LoadedConfig } from '../config/index.js';
import { nprocRootWarning } from '../controls/rlimits.js';
import { applyDefaults } from '../config/spec-defaults.js';
import { ALL_CAPS, capabilityReport, trimAllToHost } from '../controls/capabilities.js';
import { resolveAttachment } from '../network/attach.js';
import { parseIp } from '../network/ipv4.js';
import { assignPorts, parsePublish, portsInUse, publishAll, publishedPorts, PORTS_ANNOTATION } from '../network/ports.js';
import { NETWORK_ANNOTATION } from '../network/types.js';

export interface RunCliOptions extends RunOptions {
  bundle?: string;
  config?: string;
  dryRun?: boolean;
  json?: boolean;
  /** explain: one line per control instead of the plan */
  summary?: boolean;
  /** stop the init before exec until `start` (OCI create/start); not a run flag */
  waitStart?: boolean;
  /** container id (OCI create names it); random otherwise */
  id?: string;
  detach?: boolean;
  /** missing (default), always, never */
  pull?: string;
  insecureRegistry?: string[];
  /** false with --no-new-keyring (commander's negated option) */
  newKeyring?: boolean;
  /** --preserve-fds N */
  preserveFds?: number;
  /** --pid-file F (runc run): the container's host pid */
  pidFile?: string;
}

function collect(v: string, prev: string[] = []): string[] {
  return [...prev, v];
}

export function addRunFlags(cmd: Command, flags: readonly FlagDef[] = RUN_FLAGS): Command {
  for (const f of flags) {
    if (f.repeatable) cmd.option(f.syntax, f.help, collect);
    else cmd.option(f.syntax, f.help);
  }
  return cmd
    .option('--bundle <dir>', 'run an OCI bundle (config.json + rootfs) instead of an image')
    .option('--config <file>', `host-wide defaults, daemon.json keys (default ${DEFAULT_CONFIG_PATH}, or $TSRUN_CONFIG)`)
    .option('--json', 'with --dry-run / explain: the plan as JSON')
    .option('--no-new-keyring', 'keep the caller\'s session keyring instead of a new one (runc\'s flag)')
    .option('--pid-file <file>', 'write the container\'s host pid here (runc run)')
    .option('--pull <policy>', 'pull the image: missing (default), always, never')
    .option('--insecure-registry <host:port>', 'plain http for this registry when pulling (repeatable; meant for loopback)', collect);
}

function requireRoot(verb: string): void {
  if (process.getuid?.() !== 0) {
    throw new UsageError(`tsrun ${verb} needs root: it creates namespaces, mounts and cgroups (try: sudo tsrun ${verb} ...); --dry-run does not`);
  }
}

/** flags or bundle → spec → plan. Pure apart from reading the image and the bundle. */
export async function planRun(image: string | undefined, args: string[], opts: RunCliOptions, paths: Paths): Promise<Plan> {
  const id = opts.id ?? randomBytes(32).toString('hex');
  if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/.test(id)) throw new UsageError(`container id ${JSON.stringify(id)}: letters, digits, '_', '.', '-' (at most 128, starting with a letter or digit)`);
  const host = detectHost();
  const cdir = containerDir(paths, id);
  const stateRoot = paths.root;
  const terminal = Boolean(opts.tty);
  let ctx: BuildContext;
  let imageExposed: Record<string, unknown> | null | undefined;
  let cfgLoaded: LoadedConfig | undefined;
  if (opts.bundle) {
    if (image) throw new UsageError(`--bundle ${opts.bundle}: the bundle's config.json names the command; do not also give an image (${JSON.stringify(image)})`);
    const b = loadBundle(opts.bundle);
    ctx = { id, spec: b.spec, rootfs: b.rootfs, bundle: resolvePath(opts.bundle), containerDir: cdir, host, terminal: Boolean(b.spec.process.terminal), waitStart: Boolean(opts.waitStart), stateRoot };
  } else {
    if (!image) throw new UsageError('run needs an IMAGE (e.g. busybox) or --bundle DIR');
    const policy = parsePullPolicy(opts.pull);
    const cfg = loadConfig(opts.config, process.env, host);
    cfgLoaded = cfg;
    const img = await ensureImage(storeOf(paths), image, policy, { ...registryOptions(opts.insecureRegistry, cfg), progress: progressReporter(2, Boolean(process.stderr.isTTY)) });
    const rootfs = join(cdir, 'merged');
    for (const w of cfg.warnings) writeSync(2, `tsrun: warning: ${w}\n`);
    const consoleSize = terminal && process.stdout.isTTY ? { height: process.stdout.rows, width: process.stdout.columns } : undefined;
    const spec = specFromFlags({
      id,
      image: { name: img.name, config: img.config },
      args,
      opts,
      rootfs,
      containerDir: cdir,
      env: { readImageFile: imageFileReader(img.layers), ncpu: host.ncpu, planOnly: Boolean(opts.dryRun) },
      hostEnv: process.env,
      flags: RUN_FLAGS,
      beforeFlags: (spec) => applyDefaults(spec, cfg.config, { userns: opts.userns, usernsRemap: opts.usernsRemap, planOnly: Boolean(opts.dryRun) }),
      ...(consoleSize ? { consoleSize } : {}),
    });
    imageExposed = img.config.ExposedPorts;
    // --privileged / --cap-add ALL: the spec lists what the container really gets
    const missing = trimAllToHost(spec, host);
    if (missing.length) writeSync(2, `tsrun: warning: every capability asked for, but ${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} not held by tsrun here (CapEff/CapBnd): the container gets the other ${ALL_CAPS.length - missing.length}\n`);
    // which image the container was made from: rmi refuses to remove it while the container exists
    spec.annotations = { ...spec.annotations, [IMAGE_ANNOTATION]: img.id };
    spec.annotations = withImageLabels(spec.annotations, img.config.Labels);
    const ulimits = (opts as Record<string, unknown>).ulimit;
    const nprocKey = rlimitConfigKey(cfg.config, 'RLIMIT_NPROC', ulimits);
    const nw = nprocRootWarning(spec, nprocKey ? `${cfg.path}: "${nprocKey}"` : '--ulimit nproc');
    if (nw) writeSync(2, `tsrun: warning: ${nw}\n`);
    ctx = { id, spec, rootfs, overlay: { lower: img.layers, upper: join(cdir, 'upper'), work: join(cdir, 'work') }, containerDir: cdir, host, terminal, waitStart: Boolean(opts.waitStart), stateRoot, etc: etcOptions(opts) };
  }
  if (opts.newKeyring === false) ctx.noNewKeyring = true;
  const net = opts.network;
  const requests = [...((opts.publish as string[] | undefined) ?? []).map(parsePublish), ...(opts.publishAll ? publishAll(imageExposed) : [])];
  const named = net !== undefined && net !== 'none' && net !== 'host';
  if (!named) {
    for (const [flag, given] of [['-p', requests.length > 0 && !opts.publishAll], ['-P', opts.publishAll], ['--network-alias', (opts.networkAlias as string[] | undefined)?.length]] as const)
      if (given) throw new UsageError(`${flag} needs --network NAME: ports and names live on a user-defined network (tsrun network create NAME); tsrun has no default bridge like docker0`);
  }
  if (named) {
    const ports = requests.length ? assignPorts(requests, takenPorts(paths)) : [];
    const names = [ctx.spec.hostname ?? '', opts.name ?? '', ...((opts.networkAlias as string[] | undefined) ?? []), id.slice(0, 12)];
    ctx.network = resolveAttachment(paths.data, net, opts.ip, names, process.env, ports);
    if (ports.length) ctx.spec.annotations = { ...ctx.spec.annotations, [PORTS_ANNOTATION]: JSON.stringify(ports) };
    ctx.spec.annotations = { ...ctx.spec.annotations, [NETWORK_ANNOTATION]: net };
  }
  try {
    return buildPlan(ctx);
  } catch (e) {
    throw cfgLoaded ? configRlimitError(e, ctx.spec, cfgLoaded, (opts as Record<string, unknown>).ulimit) : e;
  }
}

/** --add-host HOST:IP, --dns IP, --dns-search DOMAIN, checked here (docker's forms). */
function etcOptions(opts: RunCliOptions): NonNullable<BuildContext['etc']> {
  const list = (v: unknown) => (v as string[] | undefined) ?? [];
  for (const h of list(opts.addHost)) {
    const [name = '', ip = ''] = [h.slice(0, h.indexOf(':')), h.slice(h.indexOf(':') + 1)];
    if (!h.includes(':') || !/^[a-zA-Z0-9][a-zA-Z0-9.-]*$/.test(name) || parseIp(ip) === undefined)
      throw new UsageError(`--add-host ${JSON.stringify(h)}: expected HOST:IPv4 (e.g. db:10.77.0.5)`);
  }
  for (const d of list(opts.dns)) if (parseIp(d) === undefined) throw new UsageError(`--dns ${JSON.stringify(d)}: not an IPv4 address`);
  for (const d of list(opts.dnsSearch)) if (!/^[a-zA-Z0-9.-]+$/.test(d)) throw new UsageError(`--dns-search ${JSON.stringify(d)}: not a domain name`);
  return { addHosts: list(opts.addHost), dns: list(opts.dns), dnsSearch: list(opts.dnsSearch) };
}

/** Host ports taken: host sockets (/proc/net) and the published ports of this root's containers. */
function takenPorts(paths: Paths): Set<string> {
  const taken = portsInUse();
  for (const s of listStates(paths)) for (const m of publishedPorts(s.config)) taken.add(`${m.protocol}/${m.hostPort}`);
  return taken;
}

function abbreviations(plan: Plan, paths: Paths): Record<string, string> {
  return { $CONTAINER: containerDir(paths, plan.id), $IMAGES: imagesDir(paths) };
}

export function printPlan(plan: Plan, json: boolean, abbrev: Record<string, string>): void {
  const text = json ? JSON.stringify(planJson(plan), null, 2) + '\n' : renderPlan(plan, abbrev);
  writeSync(1, text);
}

export async function runVerb(image: string | undefined, args: string[], opts: RunCliOptions, paths: Paths = defaultPaths()): Promise<number> {
  if (!opts.dryRun) requireRoot('run');
  // as docker run: a container made from an image always has a name (src/cli/names.ts)
  if (!opts.dryRun && !opts.name && !opts.bundle) {
    const taken = () => new Set(listEntries(paths).map(nameOf).filter((n): n is string => n !== undefined));
    return withGeneratedName(taken, (name) => runNamed(image, args, { ...opts, name }, paths));
  }
  return runNamed(image, args, opts, paths);
}

async function runNamed(image: string | undefined, args: string[], opts: RunCliOptions, paths: Paths): Promise<number> {
  const plan = await planRun(image, args, opts, paths);
  if (opts.dryRun) {
    printPlan(plan, Boolean(opts.json), abbreviations(plan, paths));
    return 0;
  }
  const bundle = opts.bundle ? resolvePath(opts.bundle) : '';
  const common = { plan, paths, ...(opts.name ? { name: opts.name } : {}), bundle, ...(image ? { image } : {}), ...(opts.preserveFds ? { preserveFds: opts.preserveFds } : {}), ...(opts.pidFile ? { pidFile: resolvePath(opts.pidFile) } : {}) };
  if (opts.detach) {
    if (opts.interactive) throw new UsageError('-d with -i: attaching to a detached container is not supported; drop -i');
    const tsrunArgv = [join(PROJECT_ROOT, 'bin', 'tsrun'), '--root', paths.root, '--data-root', paths.data];
    const cfg = loadConfig(opts.config);
    const logOpts = logOptsFrom(opts.logOpt as string[] | undefined, cfg.config['log-opts'], cfg.path);
    const { state } = await launch({ ...common, interactive: false, detached: { rmOnExit: Boolean(opts.rm), tsrunArgv, logOpts } });
    writeSync(1, `${state.id}\n`);
    return 0;
  }
  const signals = forwardSignals();
  let code: number | undefined;
  let launched: Awaited<ReturnType<typeof launch>> | undefined;
  try {
    // this tsrun is the container's reaper: it holds the reaper lock until the exit is
    // recorded (or the container removed), so prune and rm leave that step to it
    launched = await launch({ ...common, interactive: Boolean(opts.interactive), holdReaper: true });
    // the reports due at exit (an OOM kill) and the network address's release happen now;
    // the rest of the cleanup under the container's lock, below
    code = await attachAndWait(plan, launched.started, undefined, true, signals);
  } finally {
    signals.dispose();
    if (launched) {
      try {
        await withLock(paths, plan.id, () => {
          if (opts.rm) {
            const err = cleanup(plan, (s) => !dueAtExit(s), launched!.started.cgroupsCreated);
            if (err) writeSync(2, `tsrun: warning: cleanup: ${err.message}\n`);
            removeState(paths, plan.id);
          } else if (code !== undefined && existsSync(stateDirOf(paths, plan.id))) {
            writeFileSync(exitFile(paths, plan.id), JSON.stringify({ code, finishedAt: new Date().toISOString() }));
          }
        });
      } finally {
        launched.reaper?.release();
      }
    }
  }
  return code!;
}

/** Checked before anything is created: a bad socket must not leave a half-made container. */
export function assertSocket(path: string, flag: string): void {
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    throw new UsageError(`${flag} ${path}: ${describeError(e)}`, { cause: e });
  }
  if (!st.isSocket()) throw new UsageError(`${flag} ${path}: ENOTSOCK (not a unix socket)`);
}

/** OCI create: the init waits before exec until `tsrun start ID`. */
export async function createVerb(id: string, opts: { bundle?: string; pidFile?: string; consoleSocket?: string; newKeyring?: boolean; preserveFds?: number }, paths: Paths): Promise<number> {
  requireRoot('create');
  const bundle = resolvePath(opts.bundle ?? '.');
  const plan = await planRun(undefined, [], { bundle, waitStart: true, id, ...(opts.newKeyring === false ? { newKeyring: false } : {}) }, paths);
  if (plan.spec.process.terminal && !opts.consoleSocket) throw new UsageError('process.terminal is true: create needs --console-socket to hand the pty to');
  if (!plan.spec.process.terminal && opts.consoleSocket) throw new UsageError('--console-socket given but process.terminal is false');
  if (opts.consoleSocket) assertSocket(opts.consoleSocket, '--console-socket');
  // detached pass-through, as runc create: fds 0-2 are the engine's own pipes (conmon,
  // containerd-shim), made for this container; tsrun is gone once it returns, so it could
  // relay nothing anyway (docs/stdio.md)
  await launch({ plan, paths, bundle, interactive: true, stdio: 'pass', ...(opts.preserveFds ? { preserveFds: opts.preserveFds } : {}), ...(opts.pidFile ? { pidFile: resolvePath(opts.pidFile) } : {}), ...(opts.consoleSocket ? { consoleSocket: opts.consoleSocket } : {}) });
  return 0;
}

export async function explainVerb(image: string | undefined, args: string[], opts: RunCliOptions, paths: Paths = defaultPaths()): Promise<number> {
  // explain is a plan that never runs: nothing may be created on the host for it
  const plan = await planRun(image, args, { ...opts, dryRun: true }, paths);
  if (opts.summary) {
    const rows = summarize({ spec: plan.spec, opts, config: opts.bundle ? {} : loadConfig(opts.config, process.env).config, bundle: Boolean(opts.bundle), lsms: detectHost().lsms });
    writeSync(1, opts.json ? JSON.stringify(rows, null, 2) + '\n' : renderSummary(rows));
    return 0;
  }
  printPlan(plan, Boolean(opts.json), abbreviations(plan, paths));
  // every capability, kept or dropped, with what it allows (CIS 5.3)
  if (!opts.json) writeSync(1, `\ncapabilities (bounding set):\n${capabilityReport(plan.spec, detectHost().capEff, detectHost().capBnd).map((l) => `  ${l}`).join('\n')}\n`);
  return 0;
}
