// `tsrun seccomp compile PROFILE` prints the BPF program tsrun would load, one commented
// line per instruction; `tsrun seccomp check PROFILE SYSCALL [ARG...]` runs it in the
// TypeScript BPF interpreter for one call. PROFILE is `default` (the built-in profile),
// a docker profile, an OCI linux.seccomp object or a bundle's config.json.
import { writeSync } from 'node:fs';
import type { Command } from 'commander';
import { UsageError } from '../errors.js';
import { DOCKER_DEFAULT_CAPS, combineCaps } from '../controls/capabilities.js';
import { ARCHES } from '../controls/seccomp/arch.js';
import { actionName } from '../controls/seccomp/bpf.js';
import { check, compile, listing, type Compiled } from '../controls/seccomp/compile.js';
import { loadProfile } from '../controls/seccomp/index.js';
import { ProfileError, resolveDocker } from '../controls/seccomp/profile.js';

interface Opts {
  arch: string;
  capAdd?: string[];
  capDrop?: string[];
}

function build(ref: string, o: Opts): Compiled {
  if (o.arch !== 'x86_64' && o.arch !== 'aarch64') throw new UsageError(`--arch: expected x86_64 or aarch64, got "${o.arch}"`);
  const arch = o.arch;
  const caps = combineCaps(DOCKER_DEFAULT_CAPS, o.capAdd ?? [], o.capDrop ?? []);
  const profile = loadProfile(ref, 'seccomp profile');
  try {
    return compile(resolveDocker(profile, { caps, arch }), { native: arch, comments: true });
  } catch (e) {
    if (e instanceof ProfileError) throw new UsageError(`seccomp profile ${ref}: ${e.message}`, { cause: e });
    throw e;
  }
}

function parseArg(s: string, i: number): bigint {
  try {
    const v = s.startsWith('-') ? BigInt.asUintN(64, BigInt(s)) : BigInt(s);
    if (v < 0n || v >= 1n << 64n) throw new Error();
    return v;
  } catch {
    throw new UsageError(`argument ${i + 1}: expected an integer (decimal, 0x hex, or negative), got "${s}"`);
  }
}

function collect(v: string, prev: string[] = []): string[] {
  return [...prev, v];
}

export function registerSeccompCommand(program: Command, setExit: (code: number) => void): void {
  const cmd = program.command('seccomp').description('show and question seccomp filters (BPF compiled by tsrun)');
  const common = (c: Command) =>
    c
      .option('--arch <arch>', 'x86_64 or aarch64', process.arch === 'arm64' ? 'aarch64' : 'x86_64')
      .option('--cap-add <cap>', 'resolve the profile for a container with this capability too (repeatable)', collect)
      .option('--cap-drop <cap>', 'resolve the profile for a container without this capability (repeatable)', collect);
  common(
    cmd
      .command('compile')
      .description('print the BPF program for PROFILE (`default`, a docker profile or OCI linux.seccomp JSON) as commented disassembly')
      .argument('<profile>', '`default` or a JSON file'),
  ).action((ref: string, o: Opts) => {
    const c = build(ref, o);
    writeSync(1, listing(c, `seccomp filter for ${ref === 'default' ? 'the built-in profile' : ref} on ${o.arch}`) + '\n');
    setExit(0);
  });
  common(
    cmd
      .command('check')
      .description('run PROFILE\'s program in the BPF interpreter for one call and print the verdict')
      .argument('<profile>', '`default` or a JSON file')
      .argument('<syscall>', 'system call name, e.g. socket')
      .argument('[args...]', 'register arguments (integers), missing ones are 0'),
  ).action((ref: string, name: string, args: string[], o: Opts) => {
    if (args.length > 6) throw new UsageError(`a system call has at most 6 arguments, got ${args.length}`);
    const c = build(ref, o);
    const arch = o.arch as 'x86_64' | 'aarch64';
    if (ARCHES[arch].table[name] === undefined) throw new UsageError(`${name}: no such system call on ${arch}`);
    const vals = args.map(parseArg);
    const r = check(c, arch, name, vals);
    writeSync(1, `${name}(${vals.join(', ')}) on ${arch} (nr ${r.nr}): ${actionName(r.ret)} after ${r.steps} BPF instructions\n`);
    setExit(0);
  });
}
