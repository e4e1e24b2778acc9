// runc's command line as engines call it: list, update (flags and `--resources -`, as
// containerd's shim and so `docker update` call it), --preserve-fds, --no-new-keyring.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { afterAll, expect, it } from 'vitest';
import { BIN, describeKernel, leaks, probe, testEnv, tsrun, tsrunEnvVars } from './helpers.js';

/** The container's directory in hierarchy `ctrl`, from the kernel (/proc/PID/cgroup), not from tsrun's state. */
function cgroupFile(pid: number, ctrl: string, file: string): string {
  const line = readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').find((l) => l.split(':')[1]!.split(',').includes(ctrl))!;
  return readFileSync(`/sys/fs/cgroup/${ctrl}${line.split(':')[2]}/${file}`, 'utf8').trim();
}

describeKernel('runc CLI verbs engines call', () => {
  afterAll(() => {
    tsrun(['rm', '-f', 'cli-upd', 'cli-list']);
    expect(leaks()).toEqual([]);
  });

  it('update: --pids-limit, --memory and --resources - (JSON on stdin) change the live cgroup', () => {
    const r = tsrun(['run', '-d', '--name', 'cli-upd', '--memory', '64m', '--pids-limit', '50', 'busybox', 'sleep', '60']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const pid = JSON.parse(tsrun(['state', 'cli-upd']).stdout).pid as number;
    expect(cgroupFile(pid, 'pids', 'pids.max')).toBe('50');
    expect(cgroupFile(pid, 'memory', 'memory.limit_in_bytes')).toBe(String(64 * 1024 * 1024));

    const u = tsrun(['update', '--pids-limit', '77', '--memory', '96m', 'cli-upd']);
    expect(u.stderr).toBe('');
    expect(u.code).toBe(0);
    expect(cgroupFile(pid, 'pids', 'pids.max')).toBe('77');
    expect(cgroupFile(pid, 'memory', 'memory.limit_in_bytes')).toBe(String(96 * 1024 * 1024));

    // containerd's shim: `update --resources -` with the OCI LinuxResources JSON on stdin
    const j = tsrun(['update', '--resources', '-', 'cli-upd'], { input: JSON.stringify({ pids: { limit: 33 }, memory: { limit: 50331648 }, cpu: { shares: 512 } }) });
    expect(j.stderr).toBe('');
    expect(j.code).toBe(0);
    expect(cgroupFile(pid, 'pids', 'pids.max')).toBe('33');
    expect(cgroupFile(pid, 'memory', 'memory.limit_in_bytes')).toBe('50331648');
    expect(cgroupFile(pid, 'cpu', 'cpu.shares')).toBe('512');
    // and what tsrun reports matches
    const inspect = JSON.parse(tsrun(['inspect', 'cli-upd']).stdout)[0];
    expect(JSON.stringify(inspect)).toContain('"limit":33');

    const bad = tsrun(['update', '--resources', '-', 'cli-upd'], { input: '{"pids": {"limit": "x"' });
    expect(bad.code).toBe(125);
    expect(bad.stderr).toMatch(/^tsrun: --resources: /);
    const none = tsrun(['update', '--pids-limit', '5', 'no-such-container']);
    expect(none.code).not.toBe(0);
    expect(none.stderr).toMatch(/no such container/);
  });

  it('list: a table, -q ids, --format json with the OCI state fields', () => {
    const r = tsrun(['run', '-d', '--name', 'cli-list', 'busybox', 'sleep', '60']);
    expect(r.code).toBe(0);
    const id = JSON.parse(tsrun(['state', 'cli-list']).stdout).id as string;
    const q = tsrun(['list', '-q']);
    expect(q.code).toBe(0);
    expect(q.stdout.split('\n')).toContain(id);
    const t = tsrun(['list']);
    expect(t.stdout.split('\n')[0]).toMatch(/^ID\s+PID\s+STATUS\s+BUNDLE\s+CREATED\s+OWNER$/);
    const j = JSON.parse(tsrun(['list', '--format', 'json']).stdout) as Record<string, unknown>[];
    const mine = j.find((c) => c.id === id)!;
    expect(mine).toMatchObject({ id, status: 'running', ociVersion: expect.any(String), bundle: expect.any(String), created: expect.any(String) });
    expect(readFileSync(`/proc/${mine.pid as number}/cmdline`, 'utf8').split('\0')[0]).toBe('sleep');
  });

  it('a new session keyring per container (keys are not namespaced); --no-new-keyring keeps the caller\'s', () => {
    // the probe binary run on the host: the session keyring tsrun's caller has
    const host = JSON.parse(spawnSync(testEnv().probe, ['keyring'], { encoding: 'utf8' }).stdout);
    expect(host.serial).toBeGreaterThan(0);
    const inside = (flags: string[]) => {
      const { result, lines } = probe(flags, ['keyring']);
      expect(result.stderr).toBe('');
      expect(lines).toHaveLength(1);
      return lines[0]!;
    };
    const a = inside(['--security-opt', 'seccomp=unconfined']);
    const b = inside(['--security-opt', 'seccomp=unconfined']);
    expect(a.errno).toBe('0');
    expect(a.serial).not.toBe(host.serial);
    expect(b.serial).not.toBe(a.serial);
    expect(inside(['--security-opt', 'seccomp=unconfined', '--no-new-keyring']).serial).toBe(host.serial);
  });

  it('--preserve-fds: 0 is accepted; more is refused by name on run, create and exec, leaving nothing behind', () => {
    expect(tsrun(['run', '--rm', '--preserve-fds', '0', 'busybox', 'true']).code).toBe(0);
    for (const args of [['run', '--rm', '--preserve-fds', '1', 'busybox', 'true'], ['create', '--preserve-fds', '2', '--bundle', '/nonexistent', 'cli-pfd'], ['exec', '--preserve-fds', '1', 'cli-list', 'true']]) {
      const r = tsrun(args);
      expect(r.code).toBe(125);
      expect(r.stderr).toMatch(/^tsrun: --preserve-fds \d: not supported by tsrun/);
    }
    expect(tsrun(['state', 'cli-pfd']).code).not.toBe(0);
  });
});
