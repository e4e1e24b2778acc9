import type { Command } from 'commander';
import { newProgram, paths, runProgram } from './program.js';
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

export function buildProgram(setExit: (code: number) => void): Command {
  const program = newProgram()
    .description('a small container runtime that shows its work');
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
  return program;
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
  return runProgram(program, argv, () => exitCode);
}
