// What the CLI's start-up snapshot runs once while it is built (src/cli/snapshot.ts).
//
// V8 compiles a function the first time it runs; a snapshot keeps the bytecode of what
// ran before it was taken. So the snapshot builder walks the path of a plain `tsrun run`
// that needs no host: parse a command line, turn flags into a spec, plan it, encode it.
// Everything it plans with is made up here (ids, paths, a cgroup layout from a literal
// mountinfo, capabilities), and nothing it calls caches a host fact: the values a real run
// uses are read when it runs. The one cache it fills is the compiled built-in seccomp
// filter, whose key is the profile's whole content.
import { Command } from 'commander';
import { applyDefaults } from '../config/spec-defaults.js';
import { detectLayout } from '../controls/cgroups/mode.js';
import { warmBuiltinProfile } from '../controls/seccomp/index.js';
import { buildPlan, childSteps } from '../plan/build.js';
import { encodePlan } from '../plan/encode.js';
import { renderPlan } from '../plan/render.js';
import type { BuildContext } from '../plan/types.js';
import { specFromFlags } from '../spec/from-flags.js';
import { RUN_FLAGS } from './flags.js';

const MOUNTINFO = [
  '31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
  '32 31 0:29 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw',
  '33 31 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct',
  '34 31 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory',
  '35 31 0:32 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids',
  '36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices',
  '',
].join('\n');

/** Plans a made-up container the way `run` would (no file of the host is written). */
export function warmPlanning(): void {
  warmBuiltinProfile();
  const id = '0'.repeat(64);
  const dir = `/nonexistent/tsrun-warm/${id}`;
  const layout = detectLayout(MOUNTINFO, '');
  const host = { capEff: (1n << 41n) - 1n, lsms: [], ncpu: 2, cgroupMode: layout.mode, cgroupLayout: layout };
  const spec = specFromFlags({
    id,
    image: { name: 'busybox', config: { Cmd: ['sh'], Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'] } },
    args: ['true'],
    opts: { rm: true, env: ['A=1'] },
    rootfs: `${dir}/merged`,
    containerDir: dir,
    env: { readImageFile: () => undefined, ncpu: 2 },
    hostEnv: {},
    flags: RUN_FLAGS,
    beforeFlags: (s) => applyDefaults(s, {}),
  });
  const ctx: BuildContext = { id, spec, rootfs: `${dir}/merged`, overlay: { lower: ['/nonexistent/layer'], upper: `${dir}/upper`, work: `${dir}/work` }, containerDir: dir, host, terminal: false, waitStart: false };
  const plan = buildPlan(ctx);
  encodePlan(childSteps(plan));
  renderPlan(plan, {});
}

/** Parses a `run` command line with a tree whose action does nothing. */
export async function warmParsing(build: (setExit: (c: number) => void) => Command): Promise<void> {
  const program = build(() => undefined);
  program.commands.find((c) => c.name() === 'run')!.action(() => undefined);
  await program.parseAsync(['run', '--rm', '-e', 'A=1', '--name', 'warm', 'busybox', 'true'], { from: 'user' });
}
