// `tsrun audit`: run the checks and print them as docker-bench-security does ([PASS] [WARN]
// [INFO] [NOTE], then "Checks" and "Score": +1 per PASS, -1 per WARN).
import { statSync, readFileSync } from 'node:fs';
import type { LoadedConfig } from '../config/index.js';
import type { NetworkDef } from '../network/types.js';
import { CONTAINER_CHECKS, type Check, type Status } from './checks.js';
import { HOST_CHECKS, parseApiSockets, parseListening, type HostFacts } from './host.js';
import type { HostView, ProcessFacts } from './facts.js';

export interface Result {
  id: string;
  idCurrent: string;
  title: string;
  status: Status;
  detail: string;
  /** the audited container: its name or id, or "pid N" */
  container?: string;
  pid?: number;
}

export interface Target {
  label: string;
  facts: ProcessFacts;
}

function runChecks<F>(checks: readonly Check<F>[], facts: F, host: HostView): Omit<Result, 'container'>[] {
  return checks.map((c) => {
    const r = c.run(facts, host);
    return { id: c.id, idCurrent: c.idCurrent, title: c.title, status: r.status, detail: r.detail };
  });
}

export function auditContainers(targets: Target[], host: HostView): Result[] {
  return targets.flatMap((t) => runChecks(CONTAINER_CHECKS, t.facts, host).map((r) => ({ ...r, container: t.label, pid: t.facts.pid })));
}

export function auditHost(facts: HostFacts, host: HostView): Result[] {
  return runChecks(HOST_CHECKS, facts, host);
}

export function readHostFacts(config: LoadedConfig, networks: NetworkDef[], roots: { flag: string; path: string }[]): HostFacts {
  const listening: number[] = [];
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    try {
      listening.push(...parseListening(readFileSync(f, 'utf8')));
    } catch {
      /* no IPv6 */
    }
  }
  let apiSockets: string[] = [];
  try {
    apiSockets = parseApiSockets(readFileSync('/proc/net/unix', 'utf8'));
  } catch {
    /* no unix sockets table */
  }
  return {
    config,
    networks,
    listening,
    apiSockets,
    roots: roots.map((r) => {
      try {
        const st = statSync(r.path);
        return { ...r, uid: st.uid, mode: st.mode };
      } catch {
        return r;
      }
    }),
    uid: process.getuid?.() ?? -1,
  };
}

export function score(results: Result[]): { checks: number; score: number; warn: number } {
  let s = 0;
  for (const r of results) s += r.status === 'PASS' ? 1 : r.status === 'WARN' ? -1 : 0;
  return { checks: results.length, score: s, warn: results.filter((r) => r.status === 'WARN').length };
}

const ids = (r: Result) => `${r.id.padEnd(4)} ${`(${r.idCurrent})`.padEnd(6)}`;

/** docker-bench's layout: a section header, one line per check, then the score. */
export function renderAudit(results: Result[]): string {
  const out: string[] = [];
  let section = '';
  for (const r of results) {
    const s = r.container === undefined ? 'host: CIS 2 - runtime configuration' : `${r.container.startsWith('pid ') ? `process ${r.container}` : `container ${r.container} (pid ${r.pid})`}: CIS 5 - container runtime`;
    if (s !== section) {
      if (section) out.push('');
      out.push(`[INFO] ${s}`);
      section = s;
    }
    out.push(`[${r.status}] ${ids(r)} - ${r.title}`, `       * ${r.detail}`);
  }
  const { checks, score: sc } = score(results);
  out.push('', '[INFO] ids: CIS Docker Benchmark v1.2.0 (the workshop), then (docker-bench-security / CIS v1.6.0)', `[INFO] Checks: ${checks}`, `[INFO] Score: ${sc}`);
  return out.join('\n') + '\n';
}

export function auditJson(results: Result[]): string {
  return JSON.stringify(results.map(({ pid, ...r }) => ({ ...r, ...(pid !== undefined ? { pid } : {}) })), null, 2) + '\n';
}
