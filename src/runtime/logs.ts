import { closeSync, constants as fsc, fstatSync, openSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { KernelError, UsageError } from '../errors.js';
import { errnoOf } from '../kernel/errno.js';
import { containerDir, type Paths } from './paths.js';

// A detached container's json-file log, as docker's json-file driver keeps it: one JSON
// record per line, {"log","stream","time"}, written by tsrun-monitor (native/monitor.c).
// It lives in the data root beside the container's layer (docker: /var/lib/docker/
// containers/<id>/<id>-json.log), not in the state root, which is a tmpfs: a chatty
// container must not fill the host's memory. Rotation (max-size, max-file) is docker's.

export interface LogRecord {
  log: string;
  stream: string;
  time: string;
}

export interface LogOpts {
  /** bytes; undefined: the log grows without limit (docker's json-file default) */
  maxSize?: number;
  /** files kept, the current one included (docker's default 1) */
  maxFile: number;
}

export const logFile = (p: Paths, id: string) => join(containerDir(p, id), 'container-json.log');

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1e3, kb: 1e3, m: 1e6, mb: 1e6, g: 1e9, gb: 1e9 };

/**
 * docker's `--log-opt KEY=VALUE` (and daemon.json's "log-opts") for json-file: max-size
 * ("10m": docker's decimal units) and max-file. `where` names the flag or config key.
 */
export function parseLogOpts(opts: Record<string, string>, where: (key: string) => string): LogOpts {
  const out: LogOpts = { maxFile: 1 };
  for (const [k, v] of Object.entries(opts)) {
    if (k === 'max-size') {
      const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(v);
      const unit = m ? UNITS[m[2]!.toLowerCase()] : undefined;
      if (!m || unit === undefined) throw new UsageError(`${where(k)}: ${JSON.stringify(v)} is not a size (e.g. 10m, 512k, 1g)`);
      if (v === '-1') continue;
      const n = Math.floor(Number(m[1]) * unit);
      if (n < 1) throw new UsageError(`${where(k)}: ${JSON.stringify(v)} must be at least 1 byte`);
      out.maxSize = n;
    } else if (k === 'max-file') {
      if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 1000) throw new UsageError(`${where(k)}: ${JSON.stringify(v)} is not a number of files from 1 to 1000`);
      out.maxFile = Number(v);
    } else {
      throw new UsageError(`${where(k)}: unknown log option for the json-file driver (known: max-size, max-file)`);
    }
  }
  if (out.maxFile > 1 && out.maxSize === undefined) throw new UsageError(`${where('max-file')}: needs max-size too (docker: max-file is only used with max-size)`);
  return out;
}

/** `--log-opt KEY=VALUE` flags, over the config file's "log-opts". */
export function logOptsFrom(flags: string[] | undefined, config: Record<string, string> | undefined, configPath: string): LogOpts {
  const fromFlags: Record<string, string> = {};
  for (const f of flags ?? []) {
    const eq = f.indexOf('=');
    if (eq <= 0) throw new UsageError(`--log-opt ${JSON.stringify(f)}: expected KEY=VALUE (max-size=10m, max-file=3)`);
    fromFlags[f.slice(0, eq)] = f.slice(eq + 1);
  }
  const merged = { ...config, ...fromFlags };
  return parseLogOpts(merged, (k) => (k in fromFlags ? `--log-opt ${k}` : `${configPath}: "log-opts.${k}"`));
}

/** Arguments for tsrun-monitor. */
export function monitorLogArgs(o: LogOpts | undefined): string[] {
  if (!o?.maxSize) return [];
  return ['--max-size', String(o.maxSize), '--max-file', String(o.maxFile)];
}

/** The log's files, oldest first: LOG.N … LOG.1, LOG (the rotated ones that exist). */
export function logFiles(path: string): string[] {
  const rotated: string[] = [];
  for (let k = 1; k <= 1000; k++) {
    const p = `${path}.${k}`;
    try {
      statSync(p);
    } catch {
      break;
    }
    rotated.push(p);
  }
  return [...rotated.reverse(), path];
}

function ioError(what: string, path: string, e: unknown): Error {
  const en = errnoOf(e);
  return en ? new KernelError(`${what} ${path}`, en.errno, en.name, (e as Error).message) : (e as Error);
}

/** Opens a log file; a missing one is an empty log (rotation may have just moved it). */
function openLog(path: string): number | undefined {
  try {
    return openSync(path, fsc.O_RDONLY | fsc.O_NOFOLLOW);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw ioError('open', path, e);
  }
}

/** Parses one line; a damaged one (a partial last record after a full disk) is reported, not fatal. */
function parseRecord(line: string, where: () => string, warn: (m: string) => void): LogRecord | undefined {
  try {
    const r = JSON.parse(line) as Partial<LogRecord> | null;
    if (r && typeof r.log === 'string' && typeof r.stream === 'string' && typeof r.time === 'string') return r as LogRecord;
  } catch {
    /* reported below */
  }
  warn(`skipped a damaged log record at ${where()}: ${JSON.stringify(line.slice(0, 80))}${line.length > 80 ? '…' : ''}`);
  return undefined;
}

const CHUNK = 1 << 16;

/**
 * Reads records from `fd` starting at `offset`, in fixed chunks (memory stays bounded
 * whatever the log's size). A last line without its newline is left for the next call
 * (it may still be being written) unless `final`. Returns the offset after the last
 * complete line.
 */
function readFrom(fd: number, path: string, offset: number, final: boolean, emit: (r: LogRecord) => void, warn: (m: string) => void): number {
  const buf = Buffer.alloc(CHUNK);
  let pending: Buffer[] = [];
  let pendingStart = offset;
  let pos = offset;
  for (;;) {
    let n: number;
    try {
      n = readSync(fd, buf, 0, CHUNK, pos);
    } catch (e) {
      throw ioError('read', path, e);
    }
    if (n === 0) break;
    let start = 0;
    for (let i = buf.indexOf(10, 0); i !== -1 && i < n; i = buf.indexOf(10, i + 1)) {
      const text = Buffer.concat([...pending, buf.subarray(start, i)]).toString('utf8');
      pending = [];
      const at = pendingStart;
      if (text) {
        const r = parseRecord(text, () => `${path} (byte ${at})`, warn);
        if (r) emit(r);
      }
      start = i + 1;
      pendingStart = pos + start;
    }
    if (start < n) pending.push(Buffer.from(buf.subarray(start, n)));
    pos += n;
  }
  if (final && pending.length) {
    const text = Buffer.concat(pending).toString('utf8');
    const r = parseRecord(text, () => `${path} (byte ${pendingStart}, no end of line)`, warn);
    if (r) emit(r);
    return pos;
  }
  return pendingStart;
}

/** Every record of the log, oldest first, streamed (`rotatedOnly`: all but the current file). */
export function readLog(path: string, emit: (r: LogRecord) => void, warn: (m: string) => void, rotatedOnly = false): void {
  for (const f of rotatedOnly ? logFiles(path).slice(0, -1) : logFiles(path)) {
    const fd = openLog(f);
    if (fd === undefined) continue;
    try {
      readFrom(fd, f, 0, true, emit, warn);
    } finally {
      closeSync(fd);
    }
  }
}

/**
 * The last `n` records, read backwards from the end in chunks (docker's --tail): an
 * 850 MB log with --tail 2 reads a few KiB, not the whole file.
 */
export function tailLog(path: string, n: number, warn: (m: string) => void): LogRecord[] {
  const out: LogRecord[] = [];
  if (n <= 0) return out;
  for (const f of logFiles(path).reverse()) {
    const fd = openLog(f);
    if (fd === undefined) continue;
    try {
      let end: number;
      try {
        end = fstatSync(fd).size;
      } catch (e) {
        throw ioError('stat', f, e);
      }
      const lines: string[] = [];
      let carry: Buffer = Buffer.alloc(0);
      let pos = end;
      const buf = Buffer.alloc(CHUNK);
      while (pos > 0 && out.length + lines.length < n) {
        const len = Math.min(CHUNK, pos);
        pos -= len;
        try {
          readSync(fd, buf, 0, len, pos);
        } catch (e) {
          throw ioError('read', f, e);
        }
        const chunk = Buffer.concat([buf.subarray(0, len), carry]);
        // every complete line after the first newline of this chunk is whole
        let cut = chunk.lastIndexOf(10, chunk.length - 1);
        let tailEnd = chunk.length;
        while (cut !== -1 && out.length + lines.length < n) {
          const text = chunk.subarray(cut + 1, tailEnd).toString('utf8');
          if (text) lines.push(text);
          tailEnd = cut;
          cut = cut === 0 ? -1 : chunk.lastIndexOf(10, cut - 1);
        }
        carry = Buffer.from(chunk.subarray(0, tailEnd));
      }
      if (pos === 0 && carry.length && out.length + lines.length < n) lines.push(carry.toString('utf8'));
      const records: LogRecord[] = [];
      for (const text of lines.reverse()) {
        const r = parseRecord(text, () => f, warn);
        if (r) records.push(r);
      }
      out.unshift(...records);
    } finally {
      closeSync(fd);
    }
    if (out.length >= n) break;
  }
  return out.slice(Math.max(0, out.length - n));
}

/**
 * Follows the log as the monitor writes it, through rotations: the open fd keeps the
 * renamed file, so its last records are read before moving to the new file.
 */
export async function followLog(path: string, emit: (r: LogRecord) => void, warn: (m: string) => void, stopped: () => boolean, fromEnd: boolean): Promise<void> {
  let fd = openLog(path);
  let offset = fd !== undefined && fromEnd ? fstatSync(fd).size : 0;
  for (;;) {
    const done = stopped();
    if (fd === undefined) {
      fd = openLog(path);
      offset = 0;
    }
    if (fd !== undefined) {
      offset = readFrom(fd, path, offset, done, emit, warn);
      let current: number | undefined;
      try {
        current = statSync(path).ino;
      } catch {
        current = undefined;
      }
      if (current !== undefined && current !== fstatSync(fd).ino) {
        // rotated: finish the old file, then start the new one from its beginning
        readFrom(fd, path, offset, true, emit, warn);
        closeSync(fd);
        fd = undefined;
        continue;
      }
    }
    if (done) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  if (fd !== undefined) closeSync(fd);
}
