// What every lab shares: running tsrun (and a few host tools) as a student would type them,
// recording each command with what it printed, and undoing what the lab created.
import { childProcess } from '../builtins.js';
import { createHash } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../kernel/native.js';

export type Fact = string | number | boolean | null;

export interface CommandRecord {
  /** the command as a student types it (tsrun for bin/tsrun; VAR=value prefixes shown) */
  display: string;
  code: number | null;
  signal?: string;
  stdout: string;
  stderr: string;
}

export interface Half {
  /** what differs from the other half, e.g. "--pids-limit 100" */
  setting: string;
  commands: CommandRecord[];
  facts: Record<string, Fact>;
}

export type Verdict = 'pass' | 'fail' | 'unavailable' | 'inconclusive';

export interface LabResult {
  n: number;
  name: string;
  title: string;
  /** the workshop's part and control, and the CIS Docker Benchmark v1.2.0 check */
  workshop: string;
  cis: string;
  without: Half;
  with: Half;
  verdict: Verdict;
  why: string;
  notes: string[];
}

export interface Lab {
  n: number;
  name: string;
  title: string;
  workshop: string;
  cis: string;
  run(ctx: LabContext): Promise<LabResult>;
}

export const TSRUN_BIN = join(PROJECT_ROOT, 'bin', 'tsrun');
export const EXAMPLES = join(PROJECT_ROOT, 'build', 'examples');
export const INIT_BIN = join(PROJECT_ROOT, 'build', 'tsrun-init');

export function shq(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

export function sha256File(path: string): string {
  try {
    return createHash('sha256').update(readFileSync(path)).digest('hex');
  } catch (e) {
    return `unreadable (${(e as NodeJS.ErrnoException).code ?? 'error'})`;
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** JSON objects among the lines of a program's output (the probe and the attack print them). */
export function jsonLines(text: string): Record<string, any>[] {
  const out: Record<string, any>[] = [];
  for (const l of text.split('\n')) {
    if (!l.startsWith('{')) continue;
    try {
      out.push(JSON.parse(l) as Record<string, any>);
    } catch {
      /* a truncated line is not evidence */
    }
  }
  return out;
}

export class LabContext {
  readonly tmp: string;
  private undo: { what: string; fn: () => void }[] = [];
  /** names of containers this lab run created (unique per run, so nothing else is touched) */
  private containers = new Set<string>();
  readonly tag = `${process.pid.toString(36)}${Date.now().toString(36).slice(-4)}`;

  constructor(
    readonly env: NodeJS.ProcessEnv,
    readonly onCommand: (c: CommandRecord) => void = () => undefined,
  ) {
    this.tmp = mkdtempSync(join(tmpdir(), 'tsrun-lab-'));
    // search-only for others: a remapped container root (host uid 100000+) must reach the
    // files the labs bind-mount from here, but not list the directory
    chmodSync(this.tmp, 0o711);
  }

  name(base: string): string {
    return `lab-${base}-${this.tag}`;
  }

  /** Runs a host command (argv), recording it under `display`. */
  sh(half: Half, argv: string[], opts: { display?: string; env?: NodeJS.ProcessEnv; timeout?: number; input?: string } = {}): CommandRecord {
    const r = childProcess().spawnSync(argv[0]!, argv.slice(1), {
      env: { ...this.env, ...opts.env },
      encoding: 'utf8',
      timeout: opts.timeout ?? 60_000,
      input: opts.input ?? '',
      maxBuffer: 8 << 20,
    });
    const rec: CommandRecord = {
      display: opts.display ?? argv.map(shq).join(' '),
      code: r.status,
      ...(r.signal ? { signal: r.signal } : {}),
      stdout: r.stdout ?? '',
      stderr: (r.stderr ?? '') + (r.error && !r.signal ? `${r.error.message}\n` : ''),
    };
    if (half.setting !== QUIET) {
      half.commands.push(rec);
      this.onCommand(rec);
    }
    return rec;
  }

  /** bin/tsrun ARGS, shown as `tsrun ARGS` (with any VAR=value the lab sets for it). */
  tsrun(half: Half, args: string[], opts: { env?: Record<string, string>; timeout?: number } = {}): CommandRecord {
    const name = args.indexOf('--name');
    if (name >= 0 && args[name + 1]) this.containers.add(args[name + 1]!);
    const prefix = Object.entries(opts.env ?? {}).map(([k, v]) => `${k}=${shq(v)} `).join('');
    return this.sh(half, [TSRUN_BIN, ...args], { display: `${prefix}tsrun ${args.map(shq).join(' ')}`, env: opts.env, timeout: opts.timeout });
  }

  /** Starts bin/tsrun without waiting (lab 6 kills it). */
  spawnTsrun(half: Half, args: string[], env: Record<string, string> = {}) {
    const name = args.indexOf('--name');
    if (name >= 0 && args[name + 1]) this.containers.add(args[name + 1]!);
    const prefix = Object.entries(env).map(([k, v]) => `${k}=${shq(v)} `).join('');
    const rec: CommandRecord = { display: `${prefix}tsrun ${args.map(shq).join(' ')} &`, code: null, stdout: '', stderr: '' };
    half.commands.push(rec);
    this.onCommand(rec);
    const p = childProcess().spawn(TSRUN_BIN, args, { env: { ...this.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    p.stdout!.on('data', (c) => (rec.stdout += String(c)));
    p.stderr!.on('data', (c) => (rec.stderr += String(c)));
    const exited = new Promise<void>((r) => p.on('exit', (code, sig) => ((rec.code = code), sig && (rec.signal = sig), r())));
    return { proc: p, rec, exited };
  }

  /** A note in the command list (what a student would do by hand). */
  note(half: Half, display: string, stdout = ''): void {
    const rec = { display, code: 0, stdout, stderr: '' };
    half.commands.push(rec);
    this.onCommand(rec);
  }

  /** Host pid of a container's init, from `tsrun inspect`. */
  initPid(half: Half, name: string): number | undefined {
    // the whole inspect output is long: shown as the one line a student would grep for
    const r = this.tsrun(quiet(), ['inspect', name]);
    let pid: number | undefined;
    try {
      const p = (JSON.parse(r.stdout) as { State?: { Pid?: number } }[])[0]?.State?.Pid;
      pid = typeof p === 'number' && p > 0 ? p : undefined;
    } catch {
      pid = undefined;
    }
    this.note(half, `tsrun inspect ${name} | grep -m1 '"Pid"'`, pid ? `"Pid": ${pid},\n` : r.stderr);
    return pid;
  }

  onCleanup(what: string, fn: () => void): void {
    this.undo.push({ what, fn });
  }

  /** Removes every container this run named, then runs the undo steps, last first. */
  cleanup(): string[] {
    const problems: string[] = [];
    for (const c of this.containers) {
      const r = childProcess().spawnSync(TSRUN_BIN, ['rm', '-f', c], { env: this.env, encoding: 'utf8', timeout: 30_000 });
      if (r.status !== 0 && !/no such container|unknown container|not found/i.test(r.stderr ?? '')) problems.push(`tsrun rm -f ${c}: ${(r.stderr ?? '').trim()}`);
    }
    this.containers.clear();
    for (const u of this.undo.reverse()) {
      try {
        u.fn();
      } catch (e) {
        problems.push(`${u.what}: ${(e as Error).message}`);
      }
    }
    this.undo = [];
    rmSync(this.tmp, { recursive: true, force: true });
    return problems;
  }
}

export function newHalf(setting: string): Half {
  return { setting, commands: [], facts: {} };
}

/** Polls and repeats: run, but neither shown nor recorded. */
export const QUIET = '\u0000quiet';
export const quiet = (): Half => newHalf(QUIET);
