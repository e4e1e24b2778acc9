import { writeSync } from 'node:fs';
import type { Command } from 'commander';
import { StateError, UsageError } from '../errors.js';
import { loadConfig } from '../config/index.js';
import { listNetworks } from '../network/store.js';
import type { Paths } from '../runtime/paths.js';
import { findContainer, listStates, statusOf } from '../runtime/state.js';
import { auditContainers, auditHost, auditJson, readHostFacts, renderAudit, score, type Result, type Target } from '../audit/index.js';
import { readFacts, readHostView } from '../audit/facts.js';

interface AuditOptions {
  host?: boolean;
  pid?: string[];
  json?: boolean;
  config?: string;
}

function collect(v: string, prev: string[] = []): string[] {
  return [...prev, v];
}

function parsePid(s: string): number {
  if (!/^[1-9]\d{0,9}$/.test(s)) throw new UsageError(`--pid ${JSON.stringify(s)}: expected a process id (a positive integer)`);
  return Number(s);
}

/**
 * Exit status: 0 when no check is WARN, 1 when any is (for scripts, as `grep` and `test`
 * do), 125 for tsrun's own errors (an unknown container, an unreadable pid).
 */
export function auditVerb(refs: string[], o: AuditOptions, paths: Paths): number {
  const pids = (o.pid ?? []).map(parsePid);
  const everything = refs.length === 0 && pids.length === 0 && !o.host;
  const targets: Target[] = [];
  const states = everything ? listStates(paths).filter((s) => ['running', 'paused'].includes(statusOf(s))) : refs.map((r) => findContainer(paths, r));
  for (const s of states) {
    const st = statusOf(s);
    // a created container's init has not applied its capabilities, seccomp or no_new_privs yet
    if (st !== 'running' && st !== 'paused') throw new StateError(`container ${s.name ?? s.id.slice(0, 12)} is ${st}: only a running container's process shows its controls`);
    targets.push({ label: s.name ?? s.id.slice(0, 12), facts: readFacts(s.pid) });
  }
  for (const pid of pids) targets.push({ label: `pid ${pid}`, facts: readFacts(pid) });
  const view = readHostView();
  const results: Result[] = [];
  if (o.host || everything) {
    const cfg = loadConfig(o.config, process.env);
    const roots = [
      { flag: '--root', path: paths.root },
      { flag: '--data-root', path: paths.data },
    ];
    results.push(...auditHost(readHostFacts(cfg, listNetworks(paths.data), roots), view));
  }
  results.push(...auditContainers(targets, view));
  writeSync(1, o.json ? auditJson(results) : renderAudit(results));
  return score(results).warn > 0 ? 1 : 0;
}

export function registerAuditCommand(program: Command, paths: () => Paths, setExit: (code: number) => void): void {
  program
    .command('audit')
    .description('check containers (CIS 5) and the host (CIS 2) against what the kernel applied; exit 1 on any WARN')
    .argument('[container...]', 'tsrun containers of this root (default: --host and every running container)')
    .option('--host', 'check the host configuration (config file, listening API ports, state and data roots, networks)')
    .option('--pid <pid>', 'audit any process by pid, whoever started it (runc, podman, docker...) (repeatable)', collect)
    .option('--json', 'an array of {id, idCurrent, title, status, detail, container?}')
    .option('--config <file>', 'host-wide config to check (default /etc/tsrun/config.json, or $TSRUN_CONFIG)')
    .action((refs: string[], o: AuditOptions) => {
      setExit(auditVerb(refs, o, paths()));
    });
}
