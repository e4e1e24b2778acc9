import { v8, vm } from '../builtins.js';

// A pull moves every byte through short-lived Buffers (socket reads, file reads, inflated
// output), 64 KiB each, whose memory is malloc'd outside V8's heap. V8 collects them only
// when its own heap fills, or when such external memory has grown by 64 MB since the last
// collection; a pull allocates little else, so tens of MB of dead buffers pile up and the
// allocator's heap grows to hold them (docs/images.md "Memory of a pull"). So the pull asks
// for a young-generation collection (a scavenge, well under a millisecond with a small
// young generation) after every few MB it has moved, and has V8 free the dead buffers'
// memory during the collection rather than later on another thread. The young generation
// is kept at its starting size (V8 grows it up to 16 MB per semi-space under this churn), and
// the optimising compiler (TurboFan) is off while the pull runs: the pull's hot paths are
// native (sha256, inflate, read/write), and its compile jobs' working memory (malloc'd on
// worker threads) was ~11 MB of the peak, at no measured cost in time.
// These are set here, at run time, not on node's command line: any V8 flag there changes
// the flag hash the start-up snapshot was built with, and node refuses the snapshot (exit
// 14), and a flag for every verb would slow the others. The defaults come back when the
// last pull of the process ends (`run` goes on to run the container).

let gc: ((o: { type: 'minor' | 'major' }) => void) | undefined;
let pulls = 0;
let moved = 0;
/** bytes between scavenges: 1 MB measured worse (77 MB), 4 MB too (72 MB), 2 MB 67–70 MB */
const STEP = 2 << 20;
const PULL_FLAGS = '--semi-space-growth-factor=1 --no-concurrent-array-buffer-sweeping --no-opt';
/** V8's defaults (node --v8-options) */
const DEFAULT_FLAGS = '--semi-space-growth-factor=2 --concurrent-array-buffer-sweeping --opt';

/** A pull starts: the V8 settings above. */
export function paceStart(): void {
  if (pulls++ > 0) return;
  v8().setFlagsFromString(PULL_FLAGS);
  if (!gc) {
    // `gc` exists only with --expose-gc; set now, it is defined in a new context
    v8().setFlagsFromString('--expose-gc');
    gc = vm().runInNewContext('gc') as typeof gc;
  }
}

/** A pull ends: the defaults again once none is left. */
export function paceEnd(): void {
  if (--pulls > 0) return;
  v8().setFlagsFromString(DEFAULT_FLAGS);
}

/** `n` more bytes went through a Buffer: a scavenge every STEP bytes while a pull runs. */
export function paced(n: number): void {
  if (!gc || pulls === 0) return;
  moved += n;
  if (moved < STEP) return;
  moved = 0;
  gc({ type: 'minor' });
}
