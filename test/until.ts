// Waiting for the kernel or a daemon to reach a state, shared by every test file: a poll
// with a deadline that says what did not happen, instead of a fixed sleep that is either
// too short under load or wastes time when idle.

/** Polls `cond` until it holds; throws naming `what` after `ms`. */
export async function until(cond: () => boolean, ms = 10_000, what = 'condition', stepMs = 20): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

/** Retries `f` until it returns without throwing; after `ms`, throws with its last error. */
export async function eventually<T>(what: string, f: () => Promise<T> | T, ms = 5000, stepMs = 50): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await f();
    } catch (e) {
      if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}: ${(e as Error).message}`);
      await new Promise((r) => setTimeout(r, stepMs));
    }
  }
}
