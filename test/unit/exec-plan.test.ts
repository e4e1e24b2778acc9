import { describe, expect, it } from 'vitest';
import { RUN_FLAGS } from '../../src/cli/flags.js';
import { execPlan, execProcess, privilegeDiff } from '../../src/runtime/exec.js';
import { specFromFlags, type RunOptions } from '../../src/spec/from-flags.js';
import type { Process } from '../../src/spec/types.js';

function spec(opts: RunOptions = {}) {
  return specFromFlags({
    id: 'b'.repeat(64),
    image: { name: 'busybox', config: { Cmd: ['sh'] } },
    args: ['sleep', '60'],
    opts,
    rootfs: '/var/lib/tsrun/containers/x/merged',
    containerDir: '/var/lib/tsrun/containers/x',
    env: { readImageFile: () => undefined, ncpu: 2 },
    flags: RUN_FLAGS,
  });
}

// Issue 11 item 1: the node copy that clones never joins anything; tsrun-init does, then forks.
describe('exec plan', () => {
  it('spawns without namespace flags or cgroup, joins cgroups then namespaces from tsrun-init, and forks after the PID namespace', () => {
    const s = spec({ user: '1000', tty: true } as RunOptions);
    const plan = execPlan('b'.repeat(64), s, 4242, execProcess(s.process, { args: ['id'], terminal: true }), '/var/lib/tsrun/containers/x');
    expect(plan.cloneFlags).toEqual([]);
    const parents = plan.steps.filter((x) => x.where === 'parent');
    expect(parents).toHaveLength(1);
    expect(parents[0]).toMatchObject({ action: 'clone', flags: [] });
    const ops = plan.steps.flatMap((x) => (x.where === 'child' ? [x] : []));
    const fork = ops.findIndex((x) => x.op === 'FORK');
    const setns = ops.flatMap((x, i) => (x.op === 'SETNS' ? [i] : []));
    const cgroupWrites = ops.flatMap((x, i) => (x.op === 'WRITE_FILE' && /\/(tasks|cgroup\.procs)$/.test(x.strs[0]!) ? [i] : []));
    expect(setns.map((i) => ops[i]!.strs[0])).toEqual(['cgroup', 'ipc', 'uts', 'net', 'pid', 'mnt'].map((n) => `/proc/4242/ns/${n}`));
    expect(Math.max(...cgroupWrites)).toBeLessThan(Math.min(...setns));
    expect(Math.max(...setns)).toBeLessThan(fork);
    for (const op of ['CONSOLE', 'SETRESUID', 'CAPSET', 'EXEC'] as const) expect(ops.findIndex((x) => x.op === op), op).toBeGreaterThan(fork);
    expect(ops.filter((x) => x.op === 'FORK')).toHaveLength(1);
  });
});

describe('privilegeDiff', () => {
  const base: Process = {
    args: ['sleep'],
    cwd: '/',
    user: { uid: 1000, gid: 1000 },
    noNewPrivileges: true,
    capabilities: { bounding: ['CAP_CHOWN'], effective: [], permitted: [] },
    rlimits: [{ type: 'RLIMIT_NOFILE', soft: 1024, hard: 1024 }],
  };
  it('is empty for what a docker-style exec builds', () => {
    expect(privilegeDiff(base, execProcess(base, { args: ['id'], env: ['A=1'], cwd: '/tmp' }))).toEqual([]);
  });
  it('names a higher user, added capabilities, no_new_privs off and a raised rlimit', () => {
    const more: Process = {
      ...base,
      user: { uid: 0, gid: 0 },
      noNewPrivileges: false,
      capabilities: { bounding: ['CAP_CHOWN', 'CAP_SYS_ADMIN'], effective: ['CAP_SYS_ADMIN'], permitted: ['CAP_SYS_ADMIN'] },
      rlimits: [{ type: 'RLIMIT_NOFILE', soft: 4096, hard: 4096 }],
    };
    expect(privilegeDiff(base, more)).toEqual([
      "the exec process runs as uid 0 while the container's process runs as uid 1000",
      "the exec process runs as gid 0 while the container's process runs as gid 1000",
      'capabilities added to the bounding set: CAP_SYS_ADMIN',
      'capabilities added to the permitted set: CAP_SYS_ADMIN',
      'capabilities added to the effective set: CAP_SYS_ADMIN',
      "no_new_privs is off while the container's process has it on: setuid binaries and file capabilities raise privileges again",
      "RLIMIT_NOFILE is 4096:4096 while the container's process has 1024:1024",
    ]);
  });
});
