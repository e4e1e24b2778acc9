// The CLI as `tsrun pull` runs it (bin/tsrun starts node on dist/tsrun-pull.mjs when `pull`
// is the first argument): the same global options, messages and exit codes as the whole
// CLI, with only the pull verb loaded. Parsing and evaluating the whole CLI costs ~6.5 MB of
// the pull's peak RSS (53 against 47 MB for `pull --help`), and a pull is where the peak
// counts (issue 16.3, docs/images.md "Memory of a pull").
import { newProgram, paths, runProgram } from './program.js';
import { addPullCommand } from './pull.js';

export async function pullMain(argv: string[]): Promise<number> {
  let code = 0;
  const program = newProgram().description('a small container runtime that shows its work (this entry: pull only)');
  addPullCommand(program.command('pull'), () => paths(program), (c) => (code = c));
  return runProgram(program, argv, () => code);
}
