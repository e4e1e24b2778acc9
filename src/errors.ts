// One small hierarchy: every error tsrun raises itself carries the exit code the CLI
// returns (docker's conventions: 125 for the runtime's own errors, 126 not executable,
// 127 not found) and keeps its cause.

export class TsrunError extends Error {
  readonly exitCode: number = 125;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A bad flag or argument on the command line. */
export class UsageError extends TsrunError {}

/** An invalid OCI spec or bundle; `field` is the JSON path, e.g. `process.args`. */
export class SpecError extends TsrunError {
  constructor(
    readonly field: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${field}: ${message}`, options);
  }
}

/** A kernel operation failed; names the operation and the errno by name. */
export class KernelError extends TsrunError {
  constructor(
    readonly operation: string,
    readonly errno: number,
    readonly errnoName: string,
    readonly strerror: string,
    readonly control?: string,
  ) {
    super(`${operation}: ${errnoName} (${strerror})${control ? ` [${control}]` : ''}`);
  }
}

/** The kernel or host lacks what a control needs (e.g. SELinux not active). */
export class UnsupportedError extends TsrunError {}

/** Container state problems: unknown id, name in use, wrong status. */
export class StateError extends TsrunError {}

/** `--name` (or the name run generated) belongs to another container already. */
export class NameInUseError extends StateError {}

/** The container's command could not be executed (126) or found (127). */
export class ExecError extends TsrunError {
  override readonly exitCode: number;
  constructor(message: string, code: 126 | 127) {
    super(message);
    this.exitCode = code;
  }
}
