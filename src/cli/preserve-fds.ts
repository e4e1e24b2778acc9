// runc's --preserve-fds N (create, run, exec): the caller's fds 3..3+N-1 become the
// container's 3..3+N-1 (podman passes them for socket activation, with LISTEN_FDS). The
// cloned child puts them there and moves tsrun-init's own sync and plan fds above them
// (native/spawn.h); the init closes everything else before it runs the plan (CVE-2024-21626).
// Its own module: the docker-style verbs (lifecycle.ts) and the OCI ones (oci.ts) both take
// it, and neither imports the other for it.
import type { Command } from 'commander';
import { UsageError } from '../errors.js';

const MAX_PRESERVE = 64; // TSRUN_MAX_PRESERVE in native/spawn.h

export function parsePreserveFds(v: string): number {
  if (!/^\d+$/.test(v)) throw new UsageError(`--preserve-fds ${JSON.stringify(v)}: expected a number of fds`);
  const n = Number(v);
  if (n > MAX_PRESERVE) throw new UsageError(`--preserve-fds ${v}: at most ${MAX_PRESERVE}`);
  // Each must be one the caller passed. A number the caller left free is taken by one of
  // Node's own fds (its epoll instance lands on 3), and Node marks inherited fds
  // close-on-exec as well, so only bin/tsrun's launcher, before node starts, can count them
  // (native/launch.c sets TSRUN_CALLER_FDS): none of tsrun's own fds may reach the container.
  const passed = Number(process.env.TSRUN_CALLER_FDS ?? 'NaN');
  if (n > 0 && !(passed >= 0)) throw new UsageError(`--preserve-fds ${v}: tsrun was not started by bin/tsrun, which counts the fds its caller passed`);
  if (n > passed) throw new UsageError(`--preserve-fds ${v}: fd ${3 + passed} was not passed by the caller (EBADF)`);
  return n;
}

export function preserveFdsOption(cmd: Command): Command {
  return cmd.option('--preserve-fds <n>', 'pass the caller\'s fds 3..3+N-1 to the container as its 3..3+N-1', parsePreserveFds);
}
