// The CLI's shell, shared by the whole CLI (main.ts) and the pull-only entry (pull-main.ts):
// the global options engines and users pass, how errors become one line and an exit code
// (docker's conventions), and where --log copies them.
import { appendFileSync, writeSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { TsrunError, UsageError } from '../errors.js';
import { describeError, errnoOf } from '../kernel/errno.js';
import { quoteValue } from '../spec/quote.js';
import { defaultPaths, type Paths } from '../runtime/paths.js';

export const VERSION = '0.1.0';

export function paths(program: Command): Paths {
  const g = program.opts<{ root?: string; dataRoot?: string }>();
  const d = defaultPaths();
  return { root: g.root ?? d.root, data: g.dataRoot ?? d.data };
}

/** The root command with the global options; verbs are registered on it by the caller. */
export function newProgram(): Command {
  const program = new Command('tsrun')
    .description('a small container runtime that shows its work')
    .version(VERSION)
    .option('--root <dir>', 'state directory (default /run/tsrun, or $TSRUN_ROOT)')
    .option('--data-root <dir>', 'images and container layers (default /var/lib/tsrun, or $TSRUN_DATA)')
    // the global flags engines pass to an OCI runtime (see docs/engines.md)
    .option('--log <file>', 'also write errors to this file')
    .option('--log-format <fmt>', 'text or json (JSON lines with level, msg, time, as engines read)', 'text')
    .option('--systemd-cgroup', 'use systemd for cgroups (not supported: refused)')
    .option('--debug', 'accepted for runc compatibility')
    .enablePositionalOptions()
    .showHelpAfterError('(tsrun --help, or tsrun VERB --help, lists the flags)')
    // Every subcommand inherits these when created after them: usage errors become exit 125.
    .exitOverride()
    .configureOutput({ writeErr: (s) => writeSync(2, s.startsWith('error: ') ? `tsrun: ${s.slice(7)}` : s), writeOut: (s) => writeSync(1, s) });

  program.hook('preAction', () => {
    if (program.opts<{ systemdCgroup?: boolean }>().systemdCgroup) {
      throw new UsageError('--systemd-cgroup: tsrun drives cgroupfs directly and has no systemd support; configure the engine for cgroupfs (podman: cgroup_manager = "cgroupfs")');
    }
  });
  return program;
}

/** stderr always; and --log FILE in --log-format, where engines look for the last msg. */
function report(program: Command, msg: string): void {
  writeSync(2, `tsrun: ${msg}\n`);
  const g = program.opts<{ log?: string; logFormat?: string }>();
  if (!g.log) return;
  try {
    const line = g.logFormat === 'json' ? JSON.stringify({ level: 'error', msg, time: new Date().toISOString() }) : `${new Date().toISOString()} error: ${msg}`;
    appendFileSync(g.log, line + '\n');
  } catch {
    /* the log is best effort; the error is on stderr */
  }
}

/** `mkdir /run/tsrun/x: EROFS (read-only file system)` for Node's fs errors, else undefined. */
export function systemError(e: unknown): string | undefined {
  const x = e as { syscall?: unknown; path?: unknown; dest?: unknown } | null;
  if (!x || typeof x.syscall !== 'string' || !errnoOf(e)) return undefined;
  const where = [x.path, x.dest].filter((p): p is string => typeof p === 'string').map((p) => quoteValue(p).replace(/^"(.*)"$/, '$1'));
  return `${x.syscall}${where.length ? ` ${where.join(' -> ')}` : ''}: ${describeError(e)}`;
}

/** Parses argv and runs the verb; returns the process exit code (docker's conventions). */
export async function runProgram(program: Command, argv: string[], exitCode: () => number): Promise<number> {
  try {
    await program.parseAsync(argv, { from: 'user' });
    return exitCode();
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help and --version end through here with exit code 0
      return e.exitCode === 0 ? 0 : 125;
    }
    if (e instanceof TsrunError) {
      report(program, e.message);
      return e.exitCode;
    }
    // the reader of our output left (`tsrun logs ID | head`): end quietly with the status a
    // filter killed by SIGPIPE has (Node ignores SIGPIPE, so the write fails instead)
    if ((e as NodeJS.ErrnoException)?.code === 'EPIPE') return 128 + 13;
    // A file-system call the host refused (a full disk, a read-only or missing state root,
    // a permission): the host's condition, not a bug of tsrun. One line naming the call,
    // the path and the errno; a stack would only hide that.
    const sys = systemError(e);
    if (sys) {
      report(program, sys);
      return 125;
    }
    writeSync(2, `tsrun: internal error: ${(e as Error)?.stack ?? String(e)}\n`);
    return 125;
  }
}
