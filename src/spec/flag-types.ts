import type { Spec } from './types.js';

/**
 * One row of the flag table: src/cli reads it for --help and commander, docs/flags.md
 * is generated from it, and src/spec/from-flags.ts applies it to the spec. Each control
 * module exports its own rows (`flags`), so a control's flags live next to its code.
 */
export interface FlagDef {
  /** commander syntax, e.g. `--pids-limit <n>` or `-m, --memory <bytes>` */
  syntax: string;
  help: string;
  /** the docker run flag it mirrors, when it does */
  docker?: string;
  /** control id (src/controls/<id>) this flag configures */
  control: string;
  /** collects every occurrence into an array (e.g. -v, -e, --cap-add) */
  repeatable?: boolean;
  /** maps the parsed value into the spec; throws UsageError naming the flag on bad input */
  apply?(spec: Spec, value: unknown, env: FlagEnv): void;
}

/** What flag mappers may need beyond the spec itself. */
export interface FlagEnv {
  /**
   * reads a file of the image (top layer first), e.g. `/etc/passwd`; undefined when absent.
   * Confined to the image (src/kernel/in-root.ts imageFileReader); throws KernelError naming
   * the path when it cannot be read (not a regular file, too large).
   */
  readImageFile(path: string): string | undefined;
  ncpu: number;
  /** a plan that will not run (explain, --dry-run): change nothing on the host */
  planOnly?: boolean;
}
