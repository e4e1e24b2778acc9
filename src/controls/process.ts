import { posix } from 'node:path';
import { SpecError } from '../errors.js';
import * as op from '../plan/ops.js';
import { child, parent } from '../plan/step.js';
import type { Control, Step } from '../plan/types.js';
import { under } from './mounts.js';
import { quoteValue } from '../spec/quote.js';

// The container's process: its terminal, its user, its working directory and finally
// the execve of its command. The command path is searched in the container's own PATH
// after pivot_root, so the host's binaries are never candidates.
/** The fifo `tsrun start` opens to release a created container. */
export function startFifo(containerDir: string): string {
  return posix.join(containerDir, 'start.fifo');
}

export const control: Control = {
  id: 'process',
  title: 'Process: terminal, user, working directory, command',
  ref: 'CIS 4.1 (a non-root user for the container)',
  validate(ctx) {
    const p = ctx.spec.process;
    if (!Array.isArray(p.args) || p.args.length === 0 || p.args.some((a) => typeof a !== 'string')) {
      throw new SpecError('process.args', 'must be a non-empty array of strings');
    }
    if (typeof p.cwd !== 'string' || !p.cwd.startsWith('/')) throw new SpecError('process.cwd', `must be an absolute path (got ${quoteValue(p.cwd)})`);
    for (const k of ['uid', 'gid'] as const) {
      const v = p.user?.[k];
      if (!Number.isInteger(v) || v! < 0 || v! > 0xfffffffe) throw new SpecError(`process.user.${k}`, `must be an integer from 0 to 4294967294 (got ${quoteValue(v)})`);
    }
    // setgroups(2) takes NGROUPS_MAX (65536) groups; an op of the plan carries at most 65535
    const groups = new Set([p.user.gid, ...(p.user.additionalGids ?? [])]).size;
    if (groups > 65535) throw new SpecError('process.user.additionalGids', `${groups} distinct groups: more than setgroups(2) takes here (NGROUPS_MAX 65536, tsrun's plan 65535): EINVAL`);
    (p.env ?? []).forEach((e, i) => {
      if (typeof e !== 'string' || !e.includes('=')) throw new SpecError(`process.env[${i}]`, `must be NAME=VALUE (got ${quoteValue(e)})`);
    });
  },
  steps(ctx) {
    const p = ctx.spec.process;
    const steps: Step[] = [];
    // docker creates a missing working directory instead of failing
    steps.push(child('mounts', 'process', 'the working directory exists', op.mkdir(under(ctx, p.cwd))));
    if (ctx.terminal) {
      const size = p.consoleSize ?? { height: 0, width: 0 };
      steps.push(child('console', 'process', 'a terminal from the container\'s own devpts, relayed by tsrun', op.consoleOp(size.height, size.width)));
    } else {
      steps.push(child('early', 'process', "own session: a Ctrl-C at tsrun's terminal reaches the container only through tsrun's forwarding", op.setsid()));
    }
    if (p.oomScoreAdj !== undefined) steps.push(child('system', 'process', 'OOM-killer preference', op.oomScoreAdj(p.oomScoreAdj)));
    const groups = [...new Set([p.user.gid, ...(p.user.additionalGids ?? [])])];
    steps.push(child('user', 'process', 'supplementary groups of the container user, none of tsrun\'s', op.setgroups(groups)));
    steps.push(child('user', 'process', 'the container\'s group', op.setresgid(p.user.gid)));
    steps.push(child('user', 'process', p.user.uid === 0 ? 'root inside the container' : 'an unprivileged user inside the container', op.setresuid(p.user.uid)));
    steps.push(child('exec', 'process', 'the working directory', op.chdir(posix.normalize(p.cwd))));
    if (ctx.waitStart) {
      const fifo = startFifo(ctx.containerDir);
      // 0622: the init opens it for writing *after* switching to process.user, without
      // CAP_DAC_OVERRIDE when that user is not root (podman run --user 1000); only root can
      // reach it on the host (the container dir is root's), and the init closes it before exec
      steps.push(parent('prepare', 'process', 'OCI create/start: `tsrun start` opens it to let the command run', { action: 'mkfifo', path: fifo, mode: 0o622 }, `mkfifo -m 622 ${fifo}`));
      steps.push(child('wait-start', 'process', 'OCI create/start: the command runs only on `start`', op.waitStart(fifo)));
    }
    steps.push(child('exec', 'process', 'the container\'s command; tsrun-init is gone from here on', op.exec(p.args[0]!, p.args, p.env ?? [])));
    return steps;
  },
};
