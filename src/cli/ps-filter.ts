// `ps --filter KEY=VALUE`, as docker's: the same key given twice matches either value, different
// keys must all match; `label` filters must all match (docker's MatchKVList). `name` is a
// regular expression, as docker's filters.Match (a plain word matches as a substring); `id` is
// a prefix of the id (docker 20.10's daemon: `id=66959` from the middle of an id matches nothing).
// `before`/`since` name a container (name or id, as every verb takes them): the ones made
// before or after it, by creation time.
import { UsageError } from '../errors.js';

/** What a filter looks at of one container. */
export interface Filterable {
  id: string;
  name: string;
  /** docker's State: created, running, paused, exited, dead */
  state: string;
  labels: Record<string, string>;
  exitCode: number | null;
  /** true when the container was made from the image the `ancestor` value names */
  ancestor?: (value: string) => boolean;
  /** ISO time it was created */
  created?: string;
  /** the creation time of the container a `before`/`since` value names (resolved by the caller) */
  createdOf?: (ref: string) => string;
}

export const FILTER_KEYS = ['id', 'name', 'label', 'status', 'exited', 'ancestor', 'before', 'since'] as const;
const STATUSES = ['created', 'restarting', 'running', 'removing', 'paused', 'exited', 'dead'];

export type Filters = Map<string, string[]>;

/** Parses `-f` values; a bad one is a UsageError naming it (exit 125). */
export function parseFilters(values: string[] | undefined): Filters {
  const f: Filters = new Map();
  for (const v of values ?? []) {
    const eq = v.indexOf('=');
    if (eq <= 0) throw new UsageError(`--filter ${JSON.stringify(v)}: bad format of filter (expected name=value)`);
    const key = v.slice(0, eq).trim().toLowerCase();
    const value = v.slice(eq + 1);
    if (!(FILTER_KEYS as readonly string[]).includes(key)) throw new UsageError(`--filter ${JSON.stringify(v)}: invalid filter ${JSON.stringify(key)} (supported: ${FILTER_KEYS.join(', ')})`);
    if (key === 'status' && !STATUSES.includes(value)) throw new UsageError(`--filter ${JSON.stringify(v)}: invalid status ${JSON.stringify(value)} (one of ${STATUSES.join(', ')})`);
    if (key === 'exited' && !/^-?\d+$/.test(value)) throw new UsageError(`--filter ${JSON.stringify(v)}: exited takes an exit code (an integer)`);
    if (key === 'label' && value.split('=')[0] === '') throw new UsageError(`--filter ${JSON.stringify(v)}: label needs a key (label=KEY or label=KEY=VALUE)`);
    if ((key === 'before' || key === 'since') && !/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(value)) throw new UsageError(`--filter ${JSON.stringify(v)}: ${key} takes a container's name or id`);
    if (key === 'id' && !/^[A-Za-z0-9_.-]+$/.test(value)) throw new UsageError(`--filter ${JSON.stringify(v)}: id takes the start of a container id`);
    if (key === 'name') {
      try {
        new RegExp(value);
      } catch (e) {
        throw new UsageError(`--filter ${JSON.stringify(v)}: not a regular expression: ${(e as Error).message}`, { cause: e });
      }
    }
    f.set(key, [...(f.get(key) ?? []), value]);
  }
  return f;
}

/** docker shows stopped containers to a status filter without -a (and to exited=N). */
export function impliesAll(f: Filters): boolean {
  return f.has('status') || f.has('exited');
}

export function matches(f: Filters, c: Filterable): boolean {
  for (const [key, values] of f) {
    let ok: boolean;
    switch (key) {
      case 'id':
        ok = values.some((v) => c.id.startsWith(v));
        break;
      case 'name':
        // docker matches against "/name"; a plain "^name" matches here too
        ok = values.some((v) => new RegExp(v).test(`/${c.name}`) || new RegExp(v).test(c.name));
        break;
      case 'status':
        ok = values.includes(c.state);
        break;
      case 'exited':
        ok = c.state === 'exited' && values.some((v) => Number(v) === c.exitCode);
        break;
      case 'label':
        ok = values.every((v) => {
          const eq = v.indexOf('=');
          if (eq < 0) return Object.prototype.hasOwnProperty.call(c.labels, v);
          const k = v.slice(0, eq);
          return Object.prototype.hasOwnProperty.call(c.labels, k) && c.labels[k] === v.slice(eq + 1);
        });
        break;
      case 'ancestor':
        ok = values.some((v) => c.ancestor?.(v) ?? false);
        break;
      case 'before':
        ok = c.created !== undefined && values.every((v) => c.created! < c.createdOf!(v));
        break;
      case 'since':
        ok = c.created !== undefined && values.every((v) => c.created! > c.createdOf!(v));
        break;
      default:
        ok = false;
    }
    if (!ok) return false;
  }
  return true;
}
