import { writeSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { TsrunError } from '../errors.js';
import { describeError, errnoOf } from '../kernel/errno.js';
import { quoteValue } from '../spec/quote.js';
import { defaultPaths, type Paths } from '../runtime/paths.js';
import { appendFileSync } from 'node:fs';
import { UsageError } from '../errors.js';
import { addRunFlags, createVerb, explainVerb, runVerb, type RunCliOptions } from './run.js';
import { registerLifecycle } from './lifecycle.js';
import { registerStatsCommand } from './stats.js';
import { registerImageCommands } from './image.js';
import { registerSeccompCommand } from './seccomp.js';
import { registerNetworkCommands } from './network.js';
import { registerAuditCommand } from './audit.js';
import { registerLabCommand } from './lab.js';
import { registerOciVerbs } from './oci.js';
import { preserveFdsOption } from './preserve-fds.js';

const VERSION = '0.1.0';

function paths(program: Command): Paths {
  const g = program.opts<{ root?: string; dataRoot?: string }>();
  const d = defaultPaths();
  return { root: g.root ?? d.root, data: g.dataRoot ?? d.data };
}

export function buildProgram(setExit: (code: number) => void): Command {
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

  const run = program
    .command('run')
    .description('run a command in a new container (as docker run)')
    .argument('[image]', 'image name, e.g. busybox (the built-in image)')
    .argument('[command...]', 'command and arguments (default: the image\'s)')
    .option('--dry-run', 'print the plan of kernel operations instead of running it')
    .passThroughOptions();
  addRunFlags(preserveFdsOption(run)).action(async (image: string | undefined, args: string[], opts: RunCliOptions) => {
    setExit(await runVerb(image, args, opts, paths(program)));
  });

  const explain = program
    .command('explain')
    .description('print every kernel operation `run` would make, with the control it serves')
    .argument('[image]', 'image name')
    .argument('[command...]', 'command and arguments')
    .passThroughOptions();
  addRunFlags(explain).option('--summary', 'one line per control: on/off, value, where it came from, CIS id, where the kernel shows it').action(async (image: string | undefined, args: string[], opts: RunCliOptions) => {
    setExit(await explainVerb(image, args, opts, paths(program)));
  });
  preserveFdsOption(program
    .command('create'))
    .description('create a container from an OCI bundle, stopped before its command (OCI create)')
    .argument('<id>', 'container id')
    .option('-b, --bundle <dir>', 'bundle directory (default: the current directory)')
    .option('--pid-file <file>', 'write the init pid here')
    .option('--console-socket <path>', 'unix socket to send the pty master to (process.terminal)')
    .option('--no-pivot', 'accepted for runc compatibility (tsrun always pivots)')
    .option('--no-new-keyring', 'keep the caller\'s session keyring instead of a new one')
    .action(async (id: string, o: { bundle?: string; pidFile?: string; consoleSocket?: string; newKeyring?: boolean; preserveFds?: number }) => {
      setExit(await createVerb(id, o, paths(program)));
    });

  registerLifecycle(program, () => paths(program), setExit);
  registerStatsCommand(program);
  registerImageCommands(program, () => paths(program), setExit);
  registerSeccompCommand(program, setExit);
  registerNetworkCommands(program, () => paths(program), setExit);
  registerAuditCommand(program, () => paths(program), setExit);
  registerLabCommand(program, () => paths(program), setExit);
  registerOciVerbs(program, () => paths(program));
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

let exitCode = 0;
let prebuilt: Command | undefined;

/**
 * Builds the command tree ahead of time: the CLI's start-up snapshot calls this while it is
 * built (src/cli/snapshot.ts), so a run only parses. Commander keeps parse results in the
 * tree, so a prebuilt tree serves one main() call.
 */
export function prebuildProgram(): void {
  prebuilt = buildProgram((c) => (exitCode = c));
}

/** Runs the CLI; returns the process exit code (docker's conventions). */
export async function main(argv: string[]): Promise<number> {
  exitCode = 0;
  const program = prebuilt ?? buildProgram((c) => (exitCode = c));
  prebuilt = undefined;
  try {
    await program.parseAsync(argv, { from: 'user' });
    return exitCode;
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
