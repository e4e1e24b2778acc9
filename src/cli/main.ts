import { writeSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { TsrunError } from '../errors.js';
import { defaultPaths, type Paths } from '../runtime/paths.js';
import { addRunFlags, explainVerb, runVerb, type RunCliOptions } from './run.js';

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
  addRunFlags(run).action(async (image: string | undefined, args: string[], opts: RunCliOptions) => {
    setExit(await runVerb(image, args, opts, paths(program)));
  });

  const explain = program
    .command('explain')
    .description('print every kernel operation `run` would make, with the control it serves')
    .argument('[image]', 'image name')
    .argument('[command...]', 'command and arguments')
    .passThroughOptions();
  addRunFlags(explain).action(async (image: string | undefined, args: string[], opts: RunCliOptions) => {
    setExit(await explainVerb(image, args, opts, paths(program)));
  });
  return program;
}

/** Runs the CLI; returns the process exit code (docker's conventions). */
export async function main(argv: string[]): Promise<number> {
  let code = 0;
  const program = buildProgram((c) => (code = c));
  try {
    await program.parseAsync(argv, { from: 'user' });
    return code;
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help and --version end through here with exit code 0
      return e.exitCode === 0 ? 0 : 125;
    }
    if (e instanceof TsrunError) {
      writeSync(2, `tsrun: ${e.message}\n`);
      return e.exitCode;
    }
    writeSync(2, `tsrun: internal error: ${(e as Error)?.stack ?? String(e)}\n`);
    return 125;
  }
}
