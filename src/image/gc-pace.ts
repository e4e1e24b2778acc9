import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

// A pull moves every byte through short-lived Buffers (socket reads, file reads, inflated
// output), 64 KiB each, whose memory is malloc'd outside V8's heap. V8 collects them only
// when its own heap fills, or when such external memory has grown by 64 MB since the last
// collection; a pull allocates little else, so tens of MB of dead buffers pile up and the
// allocator's heap grows to hold them (docs/images.md "Memory of a pull"). So the pull asks
// for a young-generation collection (a scavenge, well under a millisecond with a small
// young generation) after every few MB it has moved, and has V8 free the dead buffers'
// memory during the collection rather than later on another thread.

let gc: ((o: { type: 'minor' | 'major' }) => void) | undefined;
let moved = 0;
const STEP = Number(process.env.PM_GCSTEP ?? 2) << 20;

/** Called by the pull before it moves data: the V8 settings above, once per process. */
export function paceSetup(): void {
  if (gc) return;
  if (process.env.PM_V8F !== undefined) {
    if (process.env.PM_V8F) setFlagsFromString(process.env.PM_V8F);
  } else setFlagsFromString('--semi-space-growth-factor=1 --no-concurrent-array-buffer-sweeping');
  if (process.env.PM_GCSTEP === '0') return;
  setFlagsFromString('--expose-gc');
  gc = runInNewContext('gc') as typeof gc;
}

/** `n` more bytes went through a Buffer: a scavenge every STEP bytes. */
export function paced(n: number): void {
  if (!gc) return;
  moved += n;
  if (moved < STEP) return;
  moved = 0;
  gc({ type: 'minor' });
}
