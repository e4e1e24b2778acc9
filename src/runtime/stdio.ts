import type { Kernel } from '../kernel/types.js';
import { net } from '../builtins.js';

// Design rule 4: the host's fds stay on the host. A foreground container without a terminal
// gets pipes as 0, 1 and 2 and tsrun copies between them and its own stdio, as runc's
// foreground mode and docker do. Handing it tsrun's own fds instead would give container
// root the inode behind them: /proc/self/fd/1 reopens a stdout file for reading (its earlier
// content), chmod/chown through it reach the host file, and with -i the user's terminal
// would be the container's stdin. docs/stdio.md has the whole rule and its exceptions.

/**
 * How the container's 0-2 are made.
 * - `relay`: pipes, copied by tsrun (foreground `run` and `exec`; a terminal is a pty, and
 *   then the container gets /dev/null until the pty replaces it)
 * - `pass`: tsrun's own 0-2 (OCI `create`, `exec --detach`: the engine's pipes, which the
 *   engine made for this container)
 */
export type StdioMode = 'relay' | 'pass';

/** tsrun's ends of the pipes a relayed container got as 0-2. */
export interface StdioPipes {
  /** write end of the container's stdin (-i only) */
  stdin?: number;
  stdout: number;
  stderr: number;
}

/** Pipes for a container: the ends it gets (to dup2 onto 0-2, then close here) and ours. */
export function makePipes(kernel: Kernel, interactive: boolean, devNull: number): { child: [number, number, number]; ours: StdioPipes; close(): void } {
  const made: number[] = [];
  try {
    const input = interactive ? kernel.pipe() : undefined;
    if (input) made.push(...input);
    const out = kernel.pipe();
    made.push(...out);
    const err = kernel.pipe();
    made.push(...err);
    const childEnds = [input ? input[0] : devNull, out[1], err[1]] as [number, number, number];
    return {
      child: childEnds,
      ours: { ...(input ? { stdin: input[1] } : {}), stdout: out[0], stderr: err[0] },
      close: () => {
        for (const fd of [input?.[0], out[1], err[1]]) if (fd !== undefined) kernel.close(fd);
      },
    };
  } catch (e) {
    for (const fd of made) kernel.close(fd);
    throw e;
  }
}

export function closePipes(p: StdioPipes, kernel: Kernel): void {
  for (const fd of [p.stdin, p.stdout, p.stderr]) if (fd !== undefined) kernel.close(fd);
}

/**
 * After the container's process exited, its pipes normally reach EOF at once (a PID
 * namespace ends with its init). A process outside it may still hold a write end (`--pid
 * host`, or children of an `exec`), so tsrun stops waiting once the pipes have been silent
 * this long — but never while its own stdout is still taking data (a slow reader).
 */
const QUIET_MS = 1000;

interface Pump {
  done: Promise<void>;
  /** writes handed to our stdout/stderr and not yet completed */
  busy(): boolean;
  stop(): void;
}

const quietErrors = new WeakSet<NodeJS.WriteStream>();

/** Copies one container pipe to one of tsrun's streams, keeping to the stream's pace. */
function pumpOut(fd: number, out: NodeJS.WriteStream, activity: () => void): Pump {
  // a libuv pipe: epoll reads, O_NONBLOCK on our end only (the container's end is its own file)
  const src = new (net().Socket)({ fd, readable: true, writable: false });
  let inflight = 0;
  let ended = false;
  let finished = false;
  let resolve!: () => void;
  const done = new Promise<void>((r) => (resolve = r));
  const finish = () => {
    if (finished) return;
    finished = true;
    out.off('error', onError);
    // closing the read end is what a vanished reader means to the container: EPIPE/SIGPIPE
    src.destroy();
    resolve();
  };
  const check = () => ended && inflight === 0 && finish();
  // our stdout's reader is gone (EPIPE): stop, as a direct pipe would stop the container
  const onError = () => finish();
  // stdout/stderr errors must not become an uncaught exception after the relay ended
  if (!quietErrors.has(out)) {
    quietErrors.add(out);
    out.on('error', () => undefined);
  }
  out.on('error', onError);
  const written = (err?: Error | null) => {
    inflight--;
    activity();
    if (err) finish();
    else check();
  };
  src.on('data', (chunk: Buffer) => {
    activity();
    inflight++;
    // backpressure: a slow reader of tsrun's stdout slows the container, nothing is dropped
    let more: boolean;
    try {
      more = out.write(chunk, written);
    } catch {
      // a file as stdout writes synchronously and throws (ENOSPC, EIO) instead of emitting
      inflight--;
      return finish();
    }
    if (!more) {
      src.pause();
      out.once('drain', () => src.resume());
    }
  });
  const eof = () => {
    ended = true;
    check();
  };
  src.on('end', eof);
  src.on('close', eof);
  src.on('error', eof);
  return { done, busy: () => inflight > 0, stop: finish };
}

/**
 * Relays a started container's pipes: its stdout and stderr to tsrun's, tsrun's stdin (only
 * with -i) to its stdin, closing that pipe at tsrun's EOF so `echo hi | tsrun run -i … cat`
 * ends. `done()` is called once the process exited: it resolves when both output pipes
 * reached EOF and everything read is written.
 */
export function relayPipes(p: StdioPipes): { done(): Promise<void>; stop(): void } {
  let last = Date.now();
  const activity = () => (last = Date.now());
  const outs = [pumpOut(p.stdout, process.stdout, activity), pumpOut(p.stderr, process.stderr, activity)];
  let stopInput = () => {};
  if (p.stdin !== undefined) {
    const sink = new (net().Socket)({ fd: p.stdin, readable: false, writable: true });
    const stdin = process.stdin;
    // the container closed its stdin (or exited): stop reading ours, as `head` would
    const off = () => {
      stdin.unpipe(sink);
      stdin.pause();
      sink.destroy();
    };
    sink.on('error', off);
    // end: true closes the pipe at tsrun's EOF, so the container reads EOF too
    stdin.pipe(sink);
    stopInput = off;
  }
  let stopped = false;
  return {
    async done() {
      stopInput();
      activity(); // the quiet period counts from the exit
      const all = Promise.all(outs.map((o) => o.done));
      let timer: NodeJS.Timeout | undefined;
      const quiet = new Promise<void>((resolve) => {
        timer = setInterval(() => {
          if (!outs.some((o) => o.busy()) && Date.now() - last >= QUIET_MS) resolve();
        }, 100);
      });
      try {
        await Promise.race([all, quiet]);
      } finally {
        clearInterval(timer);
      }
    },
    stop() {
      if (stopped) return;
      stopped = true;
      stopInput();
      for (const o of outs) o.stop();
    },
  };
}
