import { KernelError, UsageError } from '../errors.js';

// docker run -u: "name|uid[:group|gid]", resolved against the *container's* /etc/passwd
// and /etc/group (never the host's), as the image defines its own users.

export interface ResolvedUser {
  uid: number;
  gid: number;
  additionalGids: number[];
  home: string;
  username?: string;
}

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

export function parsePasswd(text: string | undefined): PasswdEntry[] {
  return (text ?? '')
    .split('\n')
    .map((l) => l.split(':'))
    .filter((f) => f.length >= 7 && /^\d+$/.test(f[2]!) && /^\d+$/.test(f[3]!))
    .map((f) => ({ name: f[0]!, uid: Number(f[2]), gid: Number(f[3]), home: f[5]! }));
}

export function parseGroup(text: string | undefined): { name: string; gid: number; members: string[] }[] {
  return (text ?? '')
    .split('\n')
    .map((l) => l.split(':'))
    .filter((f) => f.length >= 4 && /^\d+$/.test(f[2]!))
    .map((f) => ({ name: f[0]!, gid: Number(f[2]), members: f[3]!.split(',').filter(Boolean) }));
}

const MAX_ID = 0xfffffffe;

function numericId(s: string): number | undefined {
  if (!/^\d+$/.test(s)) return undefined;
  const n = Number(s);
  return n <= MAX_ID ? n : undefined;
}

/**
 * Resolves `spec` against files read by `read` (undefined: absent). `read` must confine the
 * path to the image or container root (src/kernel/in-root.ts): a symlink there is the
 * image's to make, and must never reach a host file (docs/host-access.md). An unreadable
 * file (a FIFO, a device, too large) is an error naming it, never a hang or a guess.
 */
export function lookupUser(spec: string, read: (path: string) => string | undefined, flag = '--user', where = "the image's"): ResolvedUser {
  const file = (path: string): string | undefined => {
    try {
      return read(path);
    } catch (e) {
      if (e instanceof KernelError) throw new UsageError(`${flag} ${JSON.stringify(spec)}: ${where} ${e.message}`, { cause: e });
      throw e;
    }
  };
  return resolveUser(spec, file('/etc/passwd'), file('/etc/group'), flag, where);
}

export function resolveUser(spec: string, passwdText: string | undefined, groupText: string | undefined, flag = '--user', where = "the image's"): ResolvedUser {
  const [userPart = '', groupPart] = spec.split(':', 2);
  if (userPart === '' || (groupPart !== undefined && groupPart === '')) throw new UsageError(`${flag} ${JSON.stringify(spec)}: expected name|uid[:group|gid]`);
  const passwd = parsePasswd(passwdText);
  const groups = parseGroup(groupText);
  let uid = numericId(userPart);
  let entry: PasswdEntry | undefined;
  if (uid === undefined) {
    if (/^\d+$/.test(userPart)) throw new UsageError(`${flag} ${JSON.stringify(spec)}: uid out of range (0-${MAX_ID})`);
    entry = passwd.find((p) => p.name === userPart);
    if (!entry) throw new UsageError(`${flag} ${JSON.stringify(spec)}: no user ${JSON.stringify(userPart)} in ${where} /etc/passwd`);
    uid = entry.uid;
  } else {
    entry = passwd.find((p) => p.uid === uid);
  }
  let gid: number;
  if (groupPart !== undefined) {
    const g = numericId(groupPart) ?? groups.find((x) => x.name === groupPart)?.gid;
    if (g === undefined) throw new UsageError(`${flag} ${JSON.stringify(spec)}: no group ${JSON.stringify(groupPart)} in ${where} /etc/group`);
    gid = g;
  } else {
    gid = entry?.gid ?? 0;
  }
  // supplementary groups of a named user, as login(1) would give them; none for a bare uid
  const additionalGids = entry ? groups.filter((g) => g.members.includes(entry!.name) && g.gid !== gid).map((g) => g.gid) : [];
  return { uid, gid, additionalGids, home: entry?.home ?? '/', ...(entry ? { username: entry.name } : {}) };
}
