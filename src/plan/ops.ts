// Constructors for the init's operations. Each returns the encoded form together with the
// call as a learner would write it (flags by name), which `explain` prints.
import type { ChildOp } from './types.js';
import { SpecError } from '../errors.js';

/** mount(2) flags, <sys/mount.h>. */
export const MS = {
  RDONLY: 1,
  NOSUID: 2,
  NODEV: 4,
  NOEXEC: 8,
  SYNCHRONOUS: 16,
  REMOUNT: 32,
  MANDLOCK: 64,
  DIRSYNC: 128,
  NOSYMFOLLOW: 256,
  NOATIME: 1024,
  NODIRATIME: 2048,
  BIND: 4096,
  MOVE: 8192,
  REC: 16384,
  SILENT: 32768,
  UNBINDABLE: 1 << 17,
  PRIVATE: 1 << 18,
  SLAVE: 1 << 19,
  SHARED: 1 << 20,
  RELATIME: 1 << 21,
  STRICTATIME: 1 << 24,
} as const;
export type MountFlag = keyof typeof MS;

/** clone(2) namespace flags, <linux/sched.h>. */
export const CLONE = {
  NEWTIME: 0x80,
  NEWNS: 0x20000,
  NEWCGROUP: 0x02000000,
  NEWUTS: 0x04000000,
  NEWIPC: 0x08000000,
  NEWUSER: 0x10000000,
  NEWPID: 0x20000000,
  NEWNET: 0x40000000,
} as const;
export type CloneFlag = keyof typeof CLONE;

export const MNT_DETACH = 2;

export function flagsValue<K extends string>(table: Record<K, number>, names: readonly K[]): number {
  return names.reduce((acc, n) => acc | table[n], 0);
}

function q(s: string): string {
  return JSON.stringify(s);
}

function msNames(flags: readonly MountFlag[]): string {
  return flags.length ? flags.map((f) => `MS_${f}`).join('|') : '0';
}

const int = (n: number | bigint): bigint => BigInt.asUintN(64, BigInt(n));

export function mount(
  source: string,
  target: string,
  fstype: string,
  flags: readonly MountFlag[],
  data = '',
): ChildOp {
  return {
    op: 'MOUNT',
    ints: [int(flagsValue(MS, flags))],
    strs: [source, target, fstype, data],
    text: `mount(${source ? q(source) : 'NULL'}, ${q(target)}, ${fstype ? q(fstype) : 'NULL'}, ${msNames(flags)}${data ? `, ${q(data)}` : ''})`,
  };
}

export function mkdir(path: string, mode = 0o755): ChildOp {
  return { op: 'MKDIR', ints: [int(mode)], strs: [path], text: `mkdir -p ${q(path)} (mode ${mode.toString(8)})` };
}

export function mkfile(path: string, mode = 0o644): ChildOp {
  return { op: 'MKFILE', ints: [int(mode)], strs: [path], text: `open(${q(path)}, O_CREAT) (bind-mount target; missing parent directories made 0755 first)` };
}

export function symlink(target: string, linkpath: string): ChildOp {
  return { op: 'SYMLINK', ints: [], strs: [target, linkpath], text: `symlink(${q(target)}, ${q(linkpath)})` };
}

export function mknod(path: string, mode: number, major: number, minor: number): ChildOp {
  // makedev(3) for the encodings glibc uses
  const dev = (BigInt(major & 0xfff) << 8n) | BigInt(minor & 0xff) | (BigInt(minor & ~0xff) << 12n) | (BigInt(major & ~0xfff) << 32n);
  return { op: 'MKNOD', ints: [int(mode), dev], strs: [path], text: `mknod(${q(path)}, 0${mode.toString(8)}, makedev(${major}, ${minor}))` };
}

export function root(path: string): ChildOp {
  return { op: 'ROOT', ints: [], strs: [path], text: `open(${q(path)}, O_PATH) — later paths below it resolve with openat2(RESOLVE_IN_ROOT)` };
}

export function joinKeyring(name: string): ChildOp {
  return { op: 'JOIN_KEYRING', ints: [], strs: [name], text: `keyctl(KEYCTL_JOIN_SESSION_KEYRING, ${q(name)})` };
}

export function chroot(newRoot: string): ChildOp {
  return { op: 'CHROOT', ints: [], strs: [newRoot], text: `chdir(${q(newRoot)}); chroot("."); chdir("/")` };
}

export function pivotRoot(newRoot: string): ChildOp {
  return {
    op: 'PIVOT_ROOT',
    ints: [],
    strs: [newRoot],
    text: `chdir(${q(newRoot)}); pivot_root(".", "."); umount2(".", MNT_DETACH); chdir("/")`,
  };
}

export function umount(path: string, detach = true): ChildOp {
  return { op: 'UMOUNT', ints: [int(detach ? MNT_DETACH : 0)], strs: [path], text: `umount2(${q(path)}${detach ? ', MNT_DETACH' : ''})` };
}

export function remountReadonly(path: string): ChildOp {
  return { op: 'REMOUNT_RO', ints: [0n], strs: [path], text: `mount(NULL, ${q(path)}, NULL, MS_REMOUNT|MS_BIND|MS_RDONLY + its locked flags)` };
}

export function maskPath(path: string): ChildOp {
  return { op: 'MASK_PATH', ints: [], strs: [path], text: `mask ${q(path)} (bind /dev/null over a file, read-only empty tmpfs over a directory)` };
}

export function chdir(path: string): ChildOp {
  return { op: 'CHDIR', ints: [], strs: [path], text: `chdir(${q(path)})` };
}

export function sethostname(name: string): ChildOp {
  return { op: 'SETHOSTNAME', ints: [], strs: [name], text: `sethostname(${q(name)})` };
}

export function setdomainname(name: string): ChildOp {
  return { op: 'SETDOMAINNAME', ints: [], strs: [name], text: `setdomainname(${q(name)})` };
}

export const RLIM_INFINITY = (1n << 64n) - 1n;

export function setrlimit(resource: number, name: string, soft: bigint, hard: bigint): ChildOp {
  const show = (v: bigint) => (v === RLIM_INFINITY ? 'RLIM_INFINITY' : v.toString());
  return { op: 'SETRLIMIT', ints: [int(resource), soft, hard], strs: [], text: `setrlimit(${name}, {${show(soft)}, ${show(hard)}})` };
}

export function setgroups(gids: readonly number[]): ChildOp {
  return { op: 'SETGROUPS', ints: gids.map(int), strs: [], text: `setgroups(${gids.length}, [${gids.join(', ')}])` };
}

export function setresgid(gid: number): ChildOp {
  return { op: 'SETRESGID', ints: [int(gid)], strs: [], text: `setresgid(${gid}, ${gid}, ${gid})` };
}

export function setresuid(uid: number): ChildOp {
  return { op: 'SETRESUID', ints: [int(uid)], strs: [], text: `setresuid(${uid}, ${uid}, ${uid})` };
}

export function keepcaps(on: boolean): ChildOp {
  return { op: 'KEEPCAPS', ints: [on ? 1n : 0n], strs: [], text: `prctl(PR_SET_KEEPCAPS, ${on ? 1 : 0})` };
}

export function capbset(keep: bigint, names: string): ChildOp {
  return { op: 'CAPBSET', ints: [keep], strs: [], text: `prctl(PR_CAPBSET_DROP, …) for every capability but ${names}` };
}

export function capset(eff: bigint, perm: bigint, inh: bigint, amb: bigint, text: string): ChildOp {
  return { op: 'CAPSET', ints: [eff, perm, inh, amb], strs: [], text };
}

export function noNewPrivs(): ChildOp {
  return { op: 'NO_NEW_PRIVS', ints: [], strs: [], text: 'prctl(PR_SET_NO_NEW_PRIVS, 1)' };
}

export function seccomp(program: Uint8Array, flags: number, text: string): ChildOp {
  return { op: 'SECCOMP', ints: [int(flags)], strs: [], blob: program, text };
}

export function writeFile(path: string, content: string): ChildOp {
  return { op: 'WRITE_FILE', ints: [], strs: [path, content], text: `write(${q(path)}, ${q(content)})` };
}

export function consoleOp(rows: number, cols: number, bindConsole = true): ChildOp {
  return {
    op: 'CONSOLE',
    ints: [int(rows), int(cols), bindConsole ? 1n : 0n],
    strs: [],
    text: `open("/dev/ptmx"); unlockpt; open("/dev/pts/N");${bindConsole ? ' mount --bind it on /dev/console;' : ''} send the master to tsrun (SCM_RIGHTS); setsid(); ioctl(TIOCSCTTY); dup2 onto 0-2`,
  };
}

export function setsid(): ChildOp {
  return { op: 'SETSID', ints: [], strs: [], text: 'setsid()' };
}

export function waitStart(fifo: string): ChildOp {
  return { op: 'WAIT_START', ints: [], strs: [fifo], text: `report ready; open(${q(fifo)}, O_WRONLY) blocks until \`tsrun start\` reads it` };
}

export function setns(path: string, flag: CloneFlag): ChildOp {
  return { op: 'SETNS', ints: [int(CLONE[flag])], strs: [path], text: `setns(open(${q(path)}), CLONE_${flag})` };
}

export function fork(): ChildOp {
  return { op: 'FORK', ints: [], strs: [], text: 'fork() → send the child\'s pid to tsrun, _exit(0); the child goes on' };
}

/** At most this much of a value goes into a plan's text (and so into an error line). */
const TEXT_MAX = 200;

function clip(text: string): string {
  return text.length <= TEXT_MAX ? text : `${text.slice(0, TEXT_MAX)}… (${text.length} characters)`;
}

/**
 * execve(2). The arguments and environment travel in the blob (argc + envc NUL-terminated
 * strings), not as op strings: an op has at most 64 of those, and the only limits on a
 * command line are the kernel's own (MAX_ARG_STRLEN per string, ARG_MAX in total), which
 * the execve itself reports as E2BIG.
 */
export function exec(file: string, argv: readonly string[], env: readonly string[]): ChildOp {
  for (const [list, field] of [[argv, 'process.args'], [env, 'process.env']] as const) {
    list.forEach((s, i) => {
      // A NUL would end the string early in C: the command would get something else than
      // asked. Bundles are refused earlier; an image's Env (hostile content) can still hold one.
      if (s.includes('\0')) throw new SpecError(`${field}[${i}]`, `contains a NUL byte, which would end the string early in the kernel (got ${clip(JSON.stringify(s))})`);
    });
  }
  const blob = Buffer.from([...argv, ...env].map((s) => `${s}\0`).join(''), 'utf8');
  return {
    op: 'EXEC',
    ints: [int(argv.length), int(env.length)],
    strs: [file],
    blob,
    text: `execve(${clip(q(file))}${file.includes('/') ? '' : ' searched in $PATH'}, ${clip(JSON.stringify(argv))}, [${env.length} env vars])`,
  };
}

export function loopbackUp(): ChildOp {
  return { op: 'LOOPBACK_UP', ints: [], strs: [], text: 'ioctl(SIOCSIFFLAGS, "lo", IFF_UP)' };
}

export function unshare(flags: readonly CloneFlag[]): ChildOp {
  return { op: 'UNSHARE', ints: [int(flagsValue(CLONE, flags))], strs: [], text: `unshare(${flags.map((f) => `CLONE_${f}`).join('|')})` };
}

export function mountFd(target: string): ChildOp {
  return { op: 'MOUNT_FD', ints: [0n], strs: [target], text: `move_mount(<fd from tsrun>, ${q(target)})` };
}

export function oomScoreAdj(value: number): ChildOp {
  return { op: 'OOM_SCORE_ADJ', ints: [int(value)], strs: [], text: `write("/proc/self/oom_score_adj", ${value})` };
}

/** OP_LANDLOCK step 0: landlock_create_ruleset; `rights` names the handled mask for explain. */
export function landlockCreate(handled: bigint, rights: string): ChildOp {
  return { op: 'LANDLOCK', ints: [0n, handled], strs: [], text: `landlock_create_ruleset({.handled_access_fs = ${rights}}) (masked to this kernel's ABI)` };
}

/** OP_LANDLOCK step 1: one LANDLOCK_RULE_PATH_BENEATH rule on a path inside the container. */
export function landlockRule(path: string, access: bigint, optional: boolean, rights: string): ChildOp {
  return {
    op: 'LANDLOCK',
    ints: [1n, access, optional ? 1n : 0n],
    strs: [path],
    text: `landlock_add_rule(ruleset, LANDLOCK_RULE_PATH_BENEATH, {open(${q(path)}, O_PATH), ${rights}})${optional ? ' (skipped if absent)' : ''}`,
  };
}

/** OP_LANDLOCK step 2: landlock_restrict_self. */
export function landlockRestrict(): ChildOp {
  return { op: 'LANDLOCK', ints: [2n], strs: [], text: 'landlock_restrict_self(ruleset, 0)' };
}

/** OP_LSM_EXEC: the AppArmor profile or SELinux label the container's execve takes. */
export function lsmExec(lsm: 'apparmor' | 'selinux', label: string): ChildOp {
  return {
    op: 'LSM_EXEC',
    ints: [lsm === 'apparmor' ? 0n : 1n],
    strs: [label],
    text: lsm === 'apparmor' ? `write("/proc/thread-self/attr/apparmor/exec", ${q(`exec ${label}`)}) (aa_change_onexec)` : `write("/proc/thread-self/attr/exec", ${q(label)}) (setexeccon)`,
  };
}
