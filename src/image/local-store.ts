// The store `run` and the library use: the content-addressed store of store.ts, with the
// built-in images (busybox, probe) imported on demand. Kept under this name for existing callers.
import { ContentStore } from './store.js';
import { importBuiltin, isBuiltin, BUILTIN } from './builtin.js';
import type { ResolvedImage } from './types.js';

export { BUILTIN };

export class LocalStore extends ContentStore {
  override async resolve(ref: string): Promise<ResolvedImage> {
    if (isBuiltin(ref) && !this.find(ref)) await importBuiltin(this, ref);
    return super.resolve(ref);
  }

  /** Imports the built-in busybox if it is not in the store yet. */
  async ensureBuiltin(): Promise<ResolvedImage> {
    return this.resolve(BUILTIN);
  }
}
