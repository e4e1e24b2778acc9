import { randomInt } from 'node:crypto';
import { NameInUseError } from '../errors.js';

// `docker run` without --name gives the container a generated name (adjective_surname), so
// `ps` always has a NAMES column to read and `stop`, `logs`, `exec` take a word rather
// than an id. tsrun does the same for `run IMAGE` with its own vocabulary: an adjective and
// one of the kernel's objects a container is made of, so a learner's `ps` reads
// `brave_seccomp` or `quiet_pivot_root`. An OCI bundle (`run --bundle`, `create`) gets no
// name: engines name containers themselves.

const ADJECTIVES = [
  'agile', 'bold', 'brave', 'bright', 'brisk', 'calm', 'careful', 'clever', 'cosy', 'crisp',
  'curious', 'daring', 'eager', 'early', 'fair', 'fast', 'fearless', 'gentle', 'glad', 'happy',
  'hardy', 'honest', 'humble', 'keen', 'kind', 'lively', 'loyal', 'lucid', 'merry', 'mindful',
  'modest', 'neat', 'nimble', 'patient', 'plucky', 'polite', 'proud', 'quick', 'quiet', 'ready',
  'sharp', 'shy', 'silent', 'sober', 'steady', 'sturdy', 'swift', 'tidy', 'trusty', 'vigilant',
  'wary', 'wise', 'witty', 'zealous',
];

const KERNEL_OBJECTS = [
  'apparmor', 'bridge', 'capability', 'cgroup', 'chroot', 'clone', 'conntrack', 'devpts', 'epoll',
  'eventfd', 'execve', 'fork', 'futex', 'idmap', 'inode', 'inotify', 'ioctl', 'keyring',
  'landlock', 'memfd', 'mknod', 'mount', 'mqueue', 'namespace', 'netfilter', 'netlink',
  'overlay', 'pidfd', 'pipe', 'pivot_root', 'prctl', 'procfs', 'ptmx', 'rlimit', 'seccomp',
  'selinux', 'setns', 'signalfd', 'socket', 'subuid', 'sysfs', 'timerfd', 'tmpfs', 'umask',
  'unshare', 'userns', 'veth', 'whiteout', 'xattr',
];

/** A name no container in `taken` has: adjective_object, then with a digit as docker adds one. */
export function generateName(taken: ReadonlySet<string>, pick: (n: number) => number = randomInt): string {
  for (let i = 0; ; i++) {
    let name = `${ADJECTIVES[pick(ADJECTIVES.length)]}_${KERNEL_OBJECTS[pick(KERNEL_OBJECTS.length)]}`;
    if (i >= 10) name += pick(10);
    if (!taken.has(name)) return name;
  }
}

/**
 * Starts a container under a generated name. The name is free when chosen, but launch takes
 * it only under the names lock: a run started at the same moment may have chosen the same
 * one and taken it first (seen with 120 runs side by side: "--name quick_ioctl is already in
 * use" for a run given no name). Then another name, a few times.
 */
export async function withGeneratedName<T>(taken: () => ReadonlySet<string>, start: (name: string) => Promise<T>, tries = 5, pick?: (n: number) => number): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await start(generateName(taken(), pick));
    } catch (e) {
      if (!(e instanceof NameInUseError) || i >= tries) throw e;
    }
  }
}
