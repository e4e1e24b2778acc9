import { execFileSync, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

// Real engines (podman through conmon, containerd through its runc shim) driving tsrun as
// their OCI runtime. Each test file gets its own temp dir holding the engine's storage and
// tsrun's state, and puts back what the engines leave on the host (cgroups, netavark's
// iptables chains, the /run/netns bind mount). See docs/engines.md and
// /work/shared/engines.md for what the engines call.

export const ROOT = join(import.meta.dirname, '..', '..');
export const BIN = join(ROOT, 'bin', 'tsrun');
const isRoot = process.getuid?.() === 0;
const inCI = process.env.CI === 'true';

export function which(tool: string): string | undefined {
  const r = spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

/**
 * A describe() for a test that needs root and an engine's binaries. Without them it is
 * skipped on a developer machine, but fails in CI (CI=true): a missing package there is a
 * broken set-up (deps/debian-packages.txt lists them), not a reason to pass.
 */
export function describeEngine(name: string, tools: string[], fn: () => void): void {
  const missing = tools.filter((t) => !which(t));
  const why = !isRoot ? 'engine tests need root' : missing.length ? `missing ${missing.join(', ')} (./setup.sh installs deps/debian-packages.txt)` : '';
  if (!why) describe(name, fn);
  else if (inCI) describe(name, () => it('has what it needs', () => expect.fail(why)));
  else describe.skip(`${name} (${why})`, fn);
}

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function run(cmd: string, args: string[], opts: { env?: Record<string, string>; timeout?: number; input?: string } = {}): Run {
  const r = spawnSync(cmd, args, { encoding: 'utf8', input: opts.input ?? '', timeout: opts.timeout ?? 60_000, env: { ...(process.env as Record<string, string>), ...opts.env } });
  return { code: r.status, stdout: r.stdout ?? '', stderr: (r.stderr ?? '') + (r.error ? String(r.error) : '') };
}

/** Runs and insists on exit 0, showing stderr when not. */
export function ok(cmd: string, args: string[], opts: { env?: Record<string, string>; timeout?: number } = {}): string {
  const r = run(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')}: exit ${r.code}\n${r.stderr}${r.stdout}`);
  return r.stdout;
}

export interface Sandbox {
  dir: string;
  /** tsrun's --root (state) and TSRUN_DATA for this test file */
  tsrunRoot: string;
  tsrunData: string;
  /** the runtime the engine gets: a script named `tsrun` that logs its argv, then execs bin/tsrun */
  runtime: string;
  /** every tsrun invocation the engine made, one argv per line */
  calls(): string[];
  /** the busybox root built by rootfs/build-busybox.sh */
  rootfs: string;
}

/**
 * The runtime engines are pointed at. It is named `tsrun` because podman passes --log and
 * --log-format only to runtimes whose basename is in runtime_supports_json; it records each
 * call (so a test can prove the engine used tsrun and not its default runc) and gives tsrun
 * this sandbox's state and data directories (podman calls start/kill/delete without --root).
 */
export function sandbox(prefix: string): Sandbox {
  const dir = mkdtempSync(join(tmpdir(), `tsrun-${prefix}-`));
  const tsrunRoot = join(dir, 'tsrun-state');
  const tsrunData = join(dir, 'tsrun-data');
  mkdirSync(join(dir, 'bin'));
  const log = join(dir, 'calls.log');
  writeFileSync(log, '');
  const runtime = join(dir, 'bin', 'tsrun');
  writeFileSync(
    runtime,
    `#!/bin/sh\nprintf '%s\\n' "$*" >> '${log}'\nTSRUN_ROOT='${tsrunRoot}' TSRUN_DATA='${tsrunData}' exec '${BIN}' "$@"\n`,
  );
  chmodSync(runtime, 0o755);
  const rootfs = join(dir, 'rootfs');
  execFileSync('/bin/sh', [join(ROOT, 'rootfs', 'build-busybox.sh'), rootfs]);
  return { dir, tsrunRoot, tsrunData, runtime, rootfs, calls: () => readFileSync(log, 'utf8').split('\n').filter(Boolean) };
}

/** Mount points at or below `prefix` (from /proc/self/mountinfo), deepest first. */
export function mountsUnder(prefix: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((m): m is string => Boolean(m) && (m === prefix || m!.startsWith(prefix + '/')))
    .sort((a, b) => b.length - a.length);
}

/** Processes whose command line mentions `needle` (an engine's temp dir): what a test left running. */
export function processesMentioning(needle: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    if (Number(pid) === process.pid) continue;
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
      if (cmd.includes(needle)) found.push(`${pid} ${cmd.trim()}`);
    } catch {
      /* exited */
    }
  }
  return found;
}

/** The cgroup hierarchies mounted here (v1 controllers and the unified one). */
function hierarchies(): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' '))
    .filter((f) => {
      const fstype = f[f.indexOf('-') + 1];
      return fstype === 'cgroup' || fstype === 'cgroup2';
    })
    .map((f) => f[4]!);
}

/** The directories named `name` right below each hierarchy's root that exist now. */
export function topCgroups(name: string): string[] {
  return hierarchies()
    .map((h) => join(h, name))
    .filter((d) => existsSync(d));
}

/** Removes an (empty) cgroup tree bottom-up; returns what could not be removed. */
export function removeCgroupTree(dir: string): string[] {
  const left: string[] = [];
  if (!existsSync(dir)) return left;
  for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) left.push(...removeCgroupTree(join(dir, e.name)));
  try {
    rmdirSync(dir);
  } catch (e) {
    left.push(`${dir}: ${(e as NodeJS.ErrnoException).code}`);
  }
  return left;
}

/**
 * What an engine adds to the host outside its own directories, recorded before a test file
 * so afterAll can put back exactly what the test added (and nothing it found already there).
 */
export interface HostSnapshot {
  cgroups: Set<string>;
  iptables: Map<string, Set<string>>;
  netnsMounted: boolean;
  /** host paths an engine creates at run time, and whether each existed */
  paths: Map<string, boolean>;
}

const TABLES = ['filter', 'nat'];

function iptablesChains(table: string): Set<string> {
  const r = run('iptables', ['-t', table, '-S']);
  return new Set(
    r.stdout
      .split('\n')
      .filter((l) => l.startsWith('-N '))
      .map((l) => l.slice(3).trim()),
  );
}

export function snapshotHost(cgroupNames: string[], paths: string[] = []): HostSnapshot {
  return {
    paths: new Map(paths.map((p) => [p, existsSync(p)])),
    cgroups: new Set(cgroupNames.flatMap(topCgroups)),
    iptables: new Map(which('iptables') ? TABLES.map((t) => [t, iptablesChains(t)]) : []),
    netnsMounted: mountsUnder('/run/netns').includes('/run/netns'),
  };
}

/**
 * Puts the host back: cgroups the engine created (e.g. podman's /libpod_parent,
 * containerd's /default), the iptables chains netavark added (the jumps into them first),
 * and the /run/netns self bind mount podman makes (only when no namespace is left in it).
 * Returns what it could not undo.
 */
export function restoreHost(before: HostSnapshot, cgroupNames: string[]): string[] {
  const left: string[] = [];
  for (const d of cgroupNames.flatMap(topCgroups)) if (!before.cgroups.has(d)) left.push(...removeCgroupTree(d));
  for (const [table, chains] of before.iptables) {
    const added = [...iptablesChains(table)].filter((c) => !chains.has(c));
    if (added.length === 0) continue;
    const rules = run('iptables', ['-t', table, '-S']).stdout.split('\n');
    for (const rule of rules) {
      const m = /^-A (\S+) (.*)$/.exec(rule);
      if (!m) continue;
      // rules that jump into an added chain, or live in one, go before the chains
      if (added.some((c) => rule.includes(`-j ${c}`) || m[1] === c)) run('sh', ['-c', `iptables -t ${table} -D ${m[1]} ${m[2]}`]);
    }
    for (const c of added) {
      const r = run('iptables', ['-t', table, '-X', c]);
      if (r.code !== 0) left.push(`iptables -t ${table} chain ${c}: ${r.stderr.trim()}`);
    }
  }
  if (!before.netnsMounted && mountsUnder('/run/netns').length === 1 && mountsUnder('/run/netns')[0] === '/run/netns') {
    const r = run('umount', ['/run/netns']);
    if (r.code !== 0) left.push(`umount /run/netns: ${r.stderr.trim()}`);
  }
  // deepest first, so a directory the engine made goes after what it made inside it
  for (const [p, existed] of [...before.paths].sort((a, b) => b[0].length - a[0].length)) {
    if (existed || !existsSync(p)) continue;
    if (mountsUnder(p).length) left.push(`${p}: still has mounts`);
    else rmSync(p, { recursive: true, force: true });
  }
  return left;
}

/** Unmounts whatever is left below `dir` (deepest first); returns what was mounted. */
export function unmountAll(dir: string): string[] {
  const found = mountsUnder(dir);
  for (const m of found) run('umount', ['-l', m]);
  return found;
}

/**
 * An OCI image archive (image-spec "image layout", tarred) holding one uncompressed layer with
 * `rootfs` and a config running `cmd`: what `ctr image import` reads. Written here rather
 * than with umoci/skopeo so the test needs no image tool.
 */
export function ociArchive(rootfs: string, work: string, cmd: string[] = ['sh']): string {
  const layout = join(work, 'oci-layout');
  const blobs = join(layout, 'blobs', 'sha256');
  mkdirSync(blobs, { recursive: true });
  const blob = (data: Buffer): { digest: string; size: number } => {
    const hex = createHash('sha256').update(data).digest('hex');
    writeFileSync(join(blobs, hex), data);
    return { digest: `sha256:${hex}`, size: data.length };
  };
  // numeric owners and a fixed order, so the layer is what the rootfs is
  const layer = execFileSync('tar', ['-C', rootfs, '--numeric-owner', '--sort=name', '-cf', '-', '.'], { maxBuffer: 256 << 20 });
  const l = blob(layer);
  const config = blob(
    Buffer.from(
      JSON.stringify({
        architecture: process.arch === 'x64' ? 'amd64' : process.arch,
        os: 'linux',
        config: { Cmd: cmd, Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], WorkingDir: '/' },
        rootfs: { type: 'layers', diff_ids: [l.digest] },
      }),
    ),
  );
  const manifest = blob(
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...l }],
      }),
    ),
  );
  writeFileSync(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  writeFileSync(join(layout, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest }] }));
  const archive = join(work, 'image.oci.tar');
  execFileSync('tar', ['-C', layout, '-cf', archive, '.']);
  return archive;
}

/** SIGTERM to a daemon this test started (by its pid), SIGKILL after `graceMs`; resolves once it exited. */
export async function stopDaemon(daemon: ChildProcess, graceMs: number): Promise<void> {
  if (daemon.exitCode !== null || daemon.signalCode !== null) return;
  const exited = new Promise((r) => daemon.once('exit', r));
  daemon.kill('SIGTERM');
  const timer = setTimeout(() => daemon.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

/**
 * What an engine test left on the host: processes naming its sandbox, mounts under it
 * (unmounted now), cgroups and paths that were not there before (removed now). The sandbox
 * directory goes when nothing is mounted under it any more.
 */
export function leftovers(sb: Sandbox, before: HostSnapshot, cgroupNames: string[]): { leftProcs: string[]; leftMounts: string[]; leftHost: string[] } {
  const leftProcs = processesMentioning(sb.dir);
  const leftMounts = unmountAll(sb.dir);
  const leftHost = restoreHost(before, cgroupNames);
  if (mountsUnder(sb.dir).length === 0) rmSync(sb.dir, { recursive: true, force: true });
  return { leftProcs, leftMounts, leftHost };
}
