// Names between the containers of a network (docker run --name / --network-alias on a
// user-defined network): each member's /etc/hosts lists every member's address and names,
// and tsrun rewrites those lists as members join and leave. Docker answers the same
// question with a DNS server inside dockerd; tsrun has no daemon to run one, and a file the
// learner can `cat` shows the mechanism plainly.
//
// The hosts files are tsrun's own (<data>/containers/<id>/hosts, in a 0700 directory,
// bind-mounted as the container's /etc/hosts). A container can write their content, never
// their path: they are opened with O_NOFOLLOW, must be regular files, are read bounded and
// rewritten in place (a bind mount pins the inode, so no rename).
import { closeSync, constants as fsc, existsSync, fstatSync, mkdirSync, openSync, readdirSync, readSync, renameSync, rmSync, writeFileSync, writeSync, readFileSync, ftruncateSync } from 'node:fs';
import { join } from 'node:path';

export interface Member {
  containerId: string;
  ip: string;
  names: string[];
  hostsFile: string;
}

/** `netDir`: <data>/networks (src/network/types.ts networksDir) */
const membersDir = (netDir: string, network: string) => join(netDir, 'members', network);
const MAX_HOSTS = 1 << 20;
const marker = (network: string) => `# network ${network}: its members, kept current by tsrun`;

export function members(netDir: string, network: string): Member[] {
  const dir = membersDir(netDir, network);
  if (!existsSync(dir)) return [];
  const out: Member[] = [];
  for (const f of readdirSync(dir).filter((x) => x.endsWith('.json')).sort()) {
    try {
      const m = JSON.parse(readFileSync(join(dir, f), 'utf8')) as Member;
      if (typeof m.ip === 'string' && Array.isArray(m.names) && typeof m.hostsFile === 'string') out.push(m);
    } catch {
      /* half-written by a tsrun that died: the next join or leave rewrites the lists without it */
    }
  }
  return out;
}

/** The container joins: its entry is recorded, then every member's list is rewritten. */
export function joinNames(netDir: string, network: string, m: Member): void {
  const dir = membersDir(netDir, network);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tmp = join(dir, `.${m.containerId}.${process.pid}.tmp`);
  writeFileSync(tmp, JSON.stringify(m), { mode: 0o600 });
  renameSync(tmp, join(dir, `${m.containerId}.json`));
  syncNames(netDir, network);
}

/** The container leaves (its cleanup, rm -f, prune): the others forget it. Idempotent. */
export function leaveNames(netDir: string, network: string, containerId: string): void {
  rmSync(join(membersDir(netDir, network), `${containerId}.json`), { force: true });
  syncNames(netDir, network);
}

/** The lines every member's /etc/hosts ends with. */
export function memberLines(all: Member[]): string[] {
  return all.map((m) => `${m.ip}\t${[...new Set(m.names)].join(' ')}`);
}

/** A hosts file's content with the network's section replaced (what is above it is the container's). */
export function withSection(content: string, network: string, lines: string[]): string {
  const mark = marker(network);
  const at = content.indexOf(`${mark}\n`);
  const head = at >= 0 ? content.slice(0, at) : content.endsWith('\n') || content === '' ? content : `${content}\n`;
  return `${head}${mark}\n${lines.map((l) => `${l}\n`).join('')}`;
}

/** Rewrites the section in every member's hosts file; members whose file is gone are dropped. */
export function syncNames(netDir: string, network: string): void {
  let all = members(netDir, network);
  const gone = all.filter((m) => !existsSync(m.hostsFile));
  for (const m of gone) rmSync(join(membersDir(netDir, network), `${m.containerId}.json`), { force: true });
  all = all.filter((m) => !gone.includes(m));
  const lines = memberLines(all);
  for (const m of all) rewriteHosts(m.hostsFile, network, lines);
}

function rewriteHosts(path: string, network: string, lines: string[]): void {
  let fd: number;
  try {
    fd = openSync(path, fsc.O_RDWR | fsc.O_NOFOLLOW);
  } catch {
    return; // removed meanwhile: that member is leaving too
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) return;
    const buf = Buffer.alloc(Math.min(st.size, MAX_HOSTS));
    const n = buf.length ? readSync(fd, buf, 0, buf.length, 0) : 0;
    const next = Buffer.from(withSection(buf.subarray(0, n).toString('utf8'), network, lines));
    ftruncateSync(fd, 0);
    writeSync(fd, next, 0, next.length, 0);
  } finally {
    closeSync(fd);
  }
}
