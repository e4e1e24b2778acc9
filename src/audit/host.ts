// The host checks of `tsrun audit --host`: CIS Docker Benchmark section 2 (daemon
// configuration) as it applies to a daemonless runtime. The "daemon" settings are tsrun's
// config file (daemon.json keys, src/config); the rest is read from the host itself: which
// TCP ports listen, who owns the state and data roots, which networks let containers talk.
import type { LoadedConfig } from '../config/index.js';
import type { NetworkDef } from '../network/types.js';
import { RUNTIME_SOCKET, type Check, type Verdict } from './checks.js';

export interface HostFacts {
  config: LoadedConfig;
  networks: NetworkDef[];
  /** local ports in LISTEN state, from /proc/net/tcp and tcp6 of tsrun's network namespace */
  listening: number[];
  /** paths of listening unix sockets named as a container engine's API (/proc/net/unix) */
  apiSockets: string[];
  /** stat of the state root and data root (undefined: does not exist yet) */
  roots: { flag: string; path: string; uid?: number; mode?: number }[];
  /** uid tsrun runs as */
  uid: number;
}

const v = (status: Verdict['status'], detail: string): Verdict => ({ status, detail });

/** Local ports in LISTEN (state 0A) from the text of /proc/net/tcp or tcp6 (proc(5)). */
export function parseListening(text: string): number[] {
  const out: number[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 4 || f[3] !== '0A') continue;
    const port = parseInt(f[1]!.split(':')[1] ?? '', 16);
    if (Number.isFinite(port)) out.push(port);
  }
  return out;
}

/**
 * Listening unix sockets (flag __SO_ACCEPTCON, 0x10000) from the text of /proc/net/unix
 * whose name is a container engine's API socket.
 */
export function parseApiSockets(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8 || (parseInt(f[3] ?? '0', 16) & 0x10000) === 0) continue;
    const path = f.slice(7).join(' ');
    if (RUNTIME_SOCKET.test(path.slice(path.lastIndexOf('/') + 1))) out.push(path);
  }
  return out;
}

const cfgName = (h: HostFacts) => (h.config.found ? h.config.path : `${h.config.path} (absent)`);

export const HOST_CHECKS: readonly Check<HostFacts>[] = [
  {
    id: '-',
    idCurrent: '2.1',
    title: 'Run the runtime as a non-root user, if possible',
    run: (h) => v('INFO', h.uid === 0 ? 'tsrun runs as root (uid 0); rootless tsrun is not supported' : `tsrun runs as uid ${h.uid}`),
  },
  {
    id: '2.1',
    idCurrent: '2.2',
    title: 'Ensure network traffic is restricted between containers on the default bridge',
    run(h) {
      // tsrun has no default bridge (docker0): every network is user-defined and carries its own icc
      const open = h.networks.filter((n) => n.icc).map((n) => n.name);
      const dflt = h.config.config.icc;
      if (open.length) return v('WARN', `networks with icc on: ${open.join(', ')} (tsrun network create --icc=false)`);
      if (dflt !== false) return v('WARN', `${cfgName(h)}: "icc" is not false, so new networks let containers talk (${h.networks.length} network(s) now, none open)`);
      return v('PASS', `"icc": false in ${h.config.path}; ${h.networks.length} network(s), all isolated`);
    },
  },
  {
    id: '2.6',
    idCurrent: '2.7',
    title: 'Ensure TLS authentication for the daemon is configured (no unauthenticated API)',
    run(h) {
      const others = h.apiSockets.length ? `; other engines' API sockets listen here: ${h.apiSockets.join(', ')} (root-only access is their protection)` : '';
      if (h.listening.includes(2375)) return v('WARN', `something listens on TCP 2375, the unencrypted Docker API port (/proc/net/tcp)${others}`);
      return v('PASS', `tsrun has no API socket and no daemon; nothing listens on TCP 2375${others}`);
    },
  },
  {
    id: '2.7',
    idCurrent: '2.8',
    title: 'Ensure the default ulimit is configured appropriately',
    run(h) {
      const du = h.config.config['default-ulimits'];
      if (!du || !Object.keys(du).length) return v('INFO', `${cfgName(h)}: no "default-ulimits"; containers get tsrun's own limits`);
      return v('PASS', `"default-ulimits": ${Object.values(du).map((u) => `${u.Name}=${u.Soft}:${u.Hard}`).join(' ')}`);
    },
  },
  {
    id: '2.8',
    idCurrent: '2.9',
    title: 'Enable user namespace support',
    run(h) {
      const r = h.config.config['userns-remap'];
      return r ? v('PASS', `"userns-remap": "${r}" in ${h.config.path}`) : v('WARN', `${cfgName(h)}: no "userns-remap"; container root is host root unless --userns-remap is given`);
    },
  },
  {
    id: '2.13',
    idCurrent: '2.15',
    title: 'Ensure live restore is enabled',
    run(h) {
      const lr = h.config.config['live-restore'];
      return v('PASS', `no daemon: each detached container is held by its own tsrun-monitor and outlives tsrun (docs/live-restore.md)${lr !== undefined ? `; "live-restore": ${lr} is accepted and changes nothing` : ''}`);
    },
  },
  {
    id: '2.15',
    idCurrent: '2.17',
    title: 'Ensure a daemon-wide custom seccomp profile is applied if appropriate',
    run(h) {
      const p = h.config.config['seccomp-profile'];
      if (p === 'unconfined') return v('WARN', `"seccomp-profile": "unconfined" in ${h.config.path}: containers get no seccomp filter by default`);
      return v('PASS', p && p !== 'builtin' ? `"seccomp-profile": ${p}` : 'the built-in default profile (docker\'s) applies unless a container opts out');
    },
  },
  {
    id: '2.17',
    idCurrent: '2.14',
    title: 'Ensure containers are restricted from acquiring new privileges',
    run(h) {
      return h.config.config['no-new-privileges'] ? v('PASS', `"no-new-privileges": true in ${h.config.path}`) : v('WARN', `${cfgName(h)}: "no-new-privileges" is not true; containers get it only with --security-opt no-new-privileges`);
    },
  },
  {
    id: '-',
    idCurrent: '-',
    title: 'Ensure the state and data roots are owned by root and not writable by others',
    run(h) {
      const bad: string[] = [];
      const ok: string[] = [];
      for (const r of h.roots) {
        if (r.mode === undefined) {
          ok.push(`${r.path} (not created yet)`);
          continue;
        }
        const mode = (r.mode & 0o7777).toString(8).padStart(4, '0');
        if (r.uid !== 0 || (r.mode & 0o022) !== 0) bad.push(`${r.flag} ${r.path}: uid ${r.uid} mode ${mode}`);
        else ok.push(`${r.path} ${mode}`);
      }
      return bad.length ? v('WARN', `${bad.join('; ')} (chown root, chmod go-w)`) : v('PASS', ok.join(', '));
    },
  },
];
