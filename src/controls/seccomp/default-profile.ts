// tsrun's built-in seccomp profile. Its effect is that of Docker's default profile (the
// list of calls a container may make is the same fact in both); the data is laid out
// here by topic, and every group a default container is denied says why.
// test/unit/seccomp-parity.test.ts holds it to that: it compares the compiled programs of
// this profile and of a pinned copy of Docker's (test/data/docker-default-seccomp.json)
// over every call number of x86_64, x32, i386 and aarch64, for many capability sets. The
// profile stays written here rather than generated from Docker's JSON so that each group
// keeps its reason (docs/seccomp.md) and the runtime carries no copied data.
//
// Principle: allow-list. Anything not listed returns EPERM (the default action), so a
// call added to a future kernel is denied until someone decides it is safe; numbers
// beyond our syscall table return ENOSYS instead (compile.ts) so that libc falls back.
import type { DockerProfile, DockerRule } from './profile.js';

/** Calls every container may make, grouped by what they are for. */
export const ALLOWED: Readonly<Record<string, readonly string[]>> = {
  'files and directories': [
    'access', 'chdir', 'chmod', 'chown', 'chown32', 'close', 'close_range', 'copy_file_range', 'creat', 'dup', 'dup2', 'dup3',
    'faccessat', 'faccessat2', 'fadvise64', 'fadvise64_64', 'fallocate', 'fchdir', 'fchmod', 'fchmodat', 'fchmodat2', 'fchown',
    'fchown32', 'fchownat', 'fcntl', 'fcntl64', 'fdatasync', 'flock', 'fstat', 'fstat64', 'fstatat64', 'fstatfs', 'fstatfs64',
    'fsync', 'ftruncate', 'ftruncate64', 'futimesat', 'getcwd', 'getdents', 'getdents64', 'lchown', 'lchown32', 'link', 'linkat',
    '_llseek', 'lseek', 'lstat', 'lstat64', 'mkdir', 'mkdirat', 'mknod', 'mknodat', 'newfstatat', 'open', 'openat', 'openat2',
    // only names a file (mount id, inode, generation); opening by handle is open_by_handle_at, gated below
    'name_to_handle_at',
    'pread64', 'preadv', 'preadv2', 'pwrite64', 'pwritev', 'pwritev2', 'read', 'readahead', 'readlink', 'readlinkat', 'readv',
    'rename', 'renameat', 'renameat2', 'rmdir', 'sendfile', 'sendfile64', 'splice', 'stat', 'stat64', 'statfs', 'statfs64',
    'statx', 'symlink', 'symlinkat', 'sync', 'sync_file_range', 'syncfs', 'tee', 'truncate', 'truncate64', 'umask', 'unlink',
    'unlinkat', 'utime', 'utimensat', 'utimensat_time64', 'utimes', 'vmsplice', 'write', 'writev', 'cachestat',
    'statmount', 'listmount',
  ],
  'extended attributes': [
    'fgetxattr', 'flistxattr', 'fremovexattr', 'fsetxattr', 'getxattr', 'lgetxattr', 'listxattr', 'llistxattr', 'lremovexattr',
    'lsetxattr', 'removexattr', 'setxattr', 'getxattrat', 'listxattrat', 'removexattrat', 'setxattrat',
  ],
  'events, polling, async I/O': [
    'epoll_create', 'epoll_create1', 'epoll_ctl', 'epoll_ctl_old', 'epoll_pwait', 'epoll_pwait2', 'epoll_wait', 'epoll_wait_old',
    'eventfd', 'eventfd2', 'fanotify_mark', 'inotify_add_watch', 'inotify_init', 'inotify_init1', 'inotify_rm_watch', 'io_cancel',
    'io_destroy', 'io_getevents', 'io_pgetevents', 'io_pgetevents_time64', 'io_setup', 'io_submit', 'ioctl', 'pause', 'poll', 'ppoll', 'ppoll_time64', 'pselect6', 'pselect6_time64',
    'pipe', 'pipe2', 'select', '_newselect', 'signalfd', 'signalfd4', 'timerfd_create', 'timerfd_gettime', 'timerfd_gettime64', 'timerfd_settime',
    'timerfd_settime64',
  ],
  memory: [
    'brk', 'madvise', 'membarrier', 'memfd_create', 'memfd_secret', 'mincore', 'mlock', 'mlock2', 'mlockall', 'mmap', 'mmap2',
    'mprotect', 'mremap', 'msync', 'munlock', 'munlockall', 'munmap', 'pkey_alloc', 'pkey_free', 'pkey_mprotect', 'remap_file_pages',
    'map_shadow_stack', 'mseal',
  ],
  'processes, threads, identity': [
    'capget', 'capset', 'execve', 'execveat', 'exit', 'exit_group', 'fork', 'vfork', 'get_robust_list', 'set_robust_list',
    'get_thread_area', 'set_thread_area', 'set_tid_address', 'getcpu', 'getegid', 'getegid32', 'geteuid', 'geteuid32', 'getgid',
    'getgid32', 'getgroups', 'getgroups32', 'getpgid', 'getpgrp', 'getpid', 'getppid', 'getpriority', 'getresgid', 'getresgid32',
    'getresuid', 'getresuid32', 'getrlimit', 'ugetrlimit', 'getrusage', 'getsid', 'gettid', 'getuid', 'getuid32', 'prctl',
    'prlimit64', 'setrlimit', 'process_mrelease', 'rseq', 'restart_syscall', 'setfsgid', 'setfsgid32', 'setfsuid', 'setfsuid32',
    'setgid', 'setgid32', 'setgroups', 'setgroups32', 'setpgid', 'setpriority', 'setregid', 'setregid32', 'setresgid',
    'setresgid32', 'setresuid', 'setresuid32', 'setreuid', 'setreuid32', 'setsid', 'setuid', 'setuid32', 'wait4', 'waitid',
    'waitpid', 'ioprio_get', 'ioprio_set', 'sched_getaffinity', 'sched_getattr', 'sched_getparam', 'sched_get_priority_max',
    'sched_get_priority_min', 'sched_getscheduler', 'sched_rr_get_interval', 'sched_rr_get_interval_time64', 'sched_setaffinity',
    'sched_setattr', 'sched_setparam', 'sched_setscheduler', 'sched_yield', 'seccomp', 'landlock_add_rule',
    'landlock_create_ruleset', 'landlock_restrict_self', 'uname', 'sysinfo', 'getrandom', 'uretprobe',
  ],
  'futexes and signals': [
    'futex', 'futex_time64', 'futex_waitv', 'futex_wake', 'futex_wait', 'futex_requeue', 'kill', 'tgkill', 'tkill',
    'pidfd_open', 'pidfd_send_signal', 'rt_sigaction', 'rt_sigpending', 'rt_sigprocmask', 'rt_sigqueueinfo', 'rt_sigreturn',
    'rt_sigsuspend', 'rt_sigtimedwait', 'rt_sigtimedwait_time64', 'rt_tgsigqueueinfo', 'sigaltstack', 'sigprocmask', 'sigreturn',
  ],
  'clocks and timers (reading only)': [
    'adjtimex', 'alarm', 'clock_adjtime', 'clock_adjtime64', 'clock_getres', 'clock_getres_time64', 'clock_gettime',
    'clock_gettime64', 'clock_nanosleep', 'clock_nanosleep_time64', 'getitimer', 'gettimeofday', 'nanosleep', 'setitimer', 'time',
    'timer_create', 'timer_delete', 'timer_getoverrun', 'timer_gettime', 'timer_gettime64', 'timer_settime', 'timer_settime64',
    'times',
  ],
  'System V and POSIX IPC (namespaced by the IPC namespace)': [
    'ipc', 'mq_getsetattr', 'mq_notify', 'mq_open', 'mq_timedreceive', 'mq_timedreceive_time64', 'mq_timedsend',
    'mq_timedsend_time64', 'mq_unlink', 'msgctl', 'msgget', 'msgrcv', 'msgsnd', 'semctl', 'semget', 'semop', 'semtimedop',
    'semtimedop_time64', 'shmat', 'shmctl', 'shmdt', 'shmget',
  ],
  // (docker's list also names recv, send and riscv_hwprobe: calls of other arches, none tsrun compiles)
  'sockets (socket() itself is filtered by family below)': [
    'accept', 'accept4', 'bind', 'connect', 'getpeername', 'getsockname', 'getsockopt', 'listen', 'recvfrom', 'recvmmsg',
    'recvmmsg_time64', 'recvmsg', 'sendmmsg', 'sendmsg', 'sendto', 'setsockopt', 'shutdown', 'socketcall', 'socketpair',
  ],
};

/** Calls denied to a default container, allowed when it holds the capability that already permits the operation. */
export const CAPABILITY_GATED: readonly { cap: string; names: readonly string[]; reason: string }[] = [
  {
    cap: 'CAP_SYS_ADMIN',
    names: [
      'bpf', 'clone', 'clone3', 'fanotify_init', 'fsconfig', 'fsmount', 'fsopen', 'fspick', 'lookup_dcookie', 'mount', 'mount_setattr', 'move_mount',
      'open_tree', 'perf_event_open', 'quotactl', 'quotactl_fd', 'setdomainname', 'sethostname', 'setns', 'syslog', 'umount', 'umount2', 'unshare',
      'lsm_get_self_attr', 'lsm_list_modules', 'lsm_set_self_attr',
    ],
    reason: 'mounts, new namespaces, BPF and perf: the large kernel surface behind most container escapes (clone without namespace flags is allowed below); the lsm_* calls (Linux 6.8, the system-call form of /proc/self/attr) are young, so they wait here too',
  },
  { cap: 'CAP_DAC_READ_SEARCH', names: ['open_by_handle_at'], reason: 'opens files by handle past the mount root: the 2014 "shocker" escape' },
  { cap: 'CAP_SYS_BOOT', names: ['reboot'], reason: 'reboot/kexec the machine' },
  { cap: 'CAP_SYS_CHROOT', names: ['chroot'], reason: 'chroot is harmless in the container, but only with the capability' },
  { cap: 'CAP_SYS_MODULE', names: ['delete_module', 'init_module', 'finit_module'], reason: 'loads code into the host kernel' },
  { cap: 'CAP_SYS_PACCT', names: ['acct'], reason: 'switches process accounting, a host-wide setting' },
  { cap: 'CAP_SYS_PTRACE', names: ['kcmp', 'pidfd_getfd', 'process_madvise', 'process_vm_readv', 'process_vm_writev', 'ptrace'], reason: 'reads and writes other processes (ptrace also bypassed seccomp before Linux 4.8)' },
  { cap: 'CAP_SYS_RAWIO', names: ['iopl', 'ioperm'], reason: 'raw I/O port access on the host hardware' },
  { cap: 'CAP_SYS_TIME', names: ['settimeofday', 'stime', 'clock_settime', 'clock_settime64'], reason: 'the clock is not namespaced: setting it sets the host\'s' },
  { cap: 'CAP_SYS_TTY_CONFIG', names: ['vhangup'], reason: 'hangs up the controlling terminal' },
  { cap: 'CAP_SYS_NICE', names: ['get_mempolicy', 'mbind', 'set_mempolicy', 'set_mempolicy_home_node'], reason: 'NUMA memory placement affects the whole host' },
  { cap: 'CAP_SYSLOG', names: ['syslog'], reason: 'the kernel log leaks addresses that help exploits' },
  { cap: 'CAP_BPF', names: ['bpf'], reason: 'eBPF programs run in the kernel' },
  { cap: 'CAP_PERFMON', names: ['perf_event_open'], reason: 'perf events have a long CVE history and observe the whole host' },
];

/** Denied to everyone by the allow-list (not listed anywhere above), with the reasons docs/seccomp.md gives. */
export const DENIED_NOTES: readonly { names: readonly string[]; reason: string }[] = [
  { names: ['io_uring_setup', 'io_uring_enter', 'io_uring_register'], reason: 'io_uring performs reads, opens, connects... submitted through a shared ring, not as system calls, so seccomp never sees them; and it has been a steady source of kernel privilege escalations (Docker denies it since 2023, after Google reported it behind most kCTF exploits and turned it off in ChromeOS and its servers)' },
  { names: ['keyctl', 'add_key', 'request_key'], reason: 'the kernel keyring is not namespaced: keys of other containers and the host' },
  { names: ['userfaultfd'], reason: 'stalls kernel page faults at will: a classic exploit primitive for races' },
  { names: ['kexec_load', 'kexec_file_load'], reason: 'replaces the running kernel' },
  { names: ['swapon', 'swapoff', 'pivot_root', 'nfsservctl', 'uselib', 'ustat', 'sysfs', '_sysctl', 'vm86', 'vm86old', 'lookup_dcookie'], reason: 'host administration or obsolete interfaces' },
  { names: ['move_pages', 'migrate_pages'], reason: 'moves memory of other processes between NUMA nodes' },
  { names: ['open_tree_attr', 'file_getattr', 'file_setattr'], reason: 'newer than the allow-list: denied until reviewed' },
];

/** personality(2) values a container may set (sys/personality.h): the rest change the ABI (e.g. READ_IMPLIES_EXEC, ADDR_NO_RANDOMIZE turns ASLR off). */
export const PERSONALITY_ALLOWED = [
  { value: 0x0, name: 'PER_LINUX' },
  { value: 0x8, name: 'PER_LINUX32' },
  { value: 0x20000, name: 'UNAME26' },
  { value: 0x20008, name: 'UNAME26|PER_LINUX32' },
  { value: 0xffffffff, name: 'query the current persona' },
] as const;

/** clone(2) flags that create namespaces (CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET = 0x7e020000). */
export const CLONE_NAMESPACE_FLAGS = 0x7e020000;
/** AF_ALG (38): kernel crypto sockets (CVE-2026-31431 "copy fail"); AF_VSOCK (40): talks to the hypervisor host. */
export const AF_ALG = 38;
export const AF_VSOCK = 40;
const ENOSYS = 38;

/** The built-in profile, in docker's format, so it resolves like any other profile. */
export function builtinProfile(): DockerProfile {
  const rules: DockerRule[] = [
    { names: Object.values(ALLOWED).flat(), action: 'SCMP_ACT_ALLOW', comment: 'the allow-list' },
    // ptrace is allowed without CAP_SYS_PTRACE only where seccomp still applies to the tracee's calls (Linux 4.8+)
    { names: ['process_vm_readv', 'process_vm_writev', 'ptrace'], action: 'SCMP_ACT_ALLOW', includes: { minKernel: '4.8' } },
    // socket(2): every family except AF_ALG and AF_VSOCK (three ranges, as rules are ORed and args ANDed)
    { names: ['socket'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: AF_ALG, op: 'SCMP_CMP_LT' }] },
    { names: ['socket'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: AF_ALG + 1, op: 'SCMP_CMP_EQ' }] },
    { names: ['socket'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: AF_VSOCK, op: 'SCMP_CMP_GT' }] },
    ...PERSONALITY_ALLOWED.map((p): DockerRule => ({ names: ['personality'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: p.value, op: 'SCMP_CMP_EQ' }], comment: p.name })),
    // arch-specific calls libc uses on that arch
    { names: ['arch_prctl'], action: 'SCMP_ACT_ALLOW', includes: { arches: ['amd64', 'x32'] } },
    { names: ['modify_ldt'], action: 'SCMP_ACT_ALLOW', includes: { arches: ['amd64', 'x32', 'x86'] } },
    // (docker also allows arm32's arm_fadvise64_64, sync_file_range2, cacheflush, set_tls...: tsrun compiles no arm32 section)
    ...CAPABILITY_GATED.map((g): DockerRule => ({ names: [...g.names], action: 'SCMP_ACT_ALLOW', includes: { caps: [g.cap] }, comment: g.reason })),
    // fork/threads without CAP_SYS_ADMIN: clone only when no namespace flag is set
    { names: ['clone'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: CLONE_NAMESPACE_FLAGS, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }], excludes: { caps: ['CAP_SYS_ADMIN'] } },
    // clone3 passes its flags in memory, which BPF cannot read: ENOSYS makes libc use clone
    { names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: ENOSYS, excludes: { caps: ['CAP_SYS_ADMIN'] } },
  ];
  return {
    defaultAction: 'SCMP_ACT_ERRNO',
    defaultErrnoRet: 1,
    archMap: [
      { architecture: 'SCMP_ARCH_X86_64', subArchitectures: ['SCMP_ARCH_X86', 'SCMP_ARCH_X32'] },
      { architecture: 'SCMP_ARCH_AARCH64', subArchitectures: ['SCMP_ARCH_ARM'] },
    ],
    syscalls: rules,
  };
}
