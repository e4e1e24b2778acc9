// runc's command line as engines call it: list, update (flags and `--resources -`, as
// containerd's shim and so `docker update` call it), --preserve-fds, --no-new-keyring.
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { BIN, describeKernel, leaks, probe, testEnv, tsrun, tsrunEnvVars } from './helpers.js';

/** The container's directory in hierarchy `ctrl`, from the kernel (/proc/PID/cgroup), not from tsrun's state. */
function cgroupDir(pid: number, ctrl: string): string {
  const line = readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').find((l) => l.split(':')[1]!.split(',').includes(ctrl))!;
  return `/sys/fs/cgroup/${ctrl}${line.split(':')[2]}`;
}
function cgroupFile(pid: number, ctrl: string, file: string): string {
  return readFileSync(join(cgroupDir(pid, ctrl), file), 'utf8').trim();
}

describeKernel('runc CLI verbs engines call', () => {
  afterAll(() => {
    for (const id of ['cli-upd', 'cli-list', 'cli-pfd-x', 'cli-kr', 'cli-ev', 'cli-ev-oom', 'cli-pfd-d']) tsrun(['rm', '-f', id]);
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
    const pidFile = join(mkdtempSync(join(tmpdir(), 'tsrun-pf-')), 'pid');
    const r = tsrun(['run', '-d', '--pid-file', pidFile, '--name', 'cli-list', 'busybox', 'sleep', '60']);
    expect(r.code).toBe(0);
    const st = JSON.parse(tsrun(['state', 'cli-list']).stdout);
    const id = st.id as string;
    // runc run --pid-file: the container's host pid
    expect(readFileSync(pidFile, 'utf8')).toBe(String(st.pid));
    rmSync(join(pidFile, '..'), { recursive: true });
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
    // exec: the process joins a keyring of the container's, never the caller's (runc's exec does too)
    expect(tsrun(['run', '-d', '--name', 'cli-kr', '--security-opt', 'seccomp=unconfined', 'probe', '/probe', 'sleep', '30']).code).toBe(0);
    const ex = tsrun(['exec', 'cli-kr', '/probe', 'keyring']);
    expect(ex.stderr).toBe('');
    const e = JSON.parse(ex.stdout.trim());
    expect(e.errno).toBe('0');
    expect(e.serial).not.toBe(host.serial);
  });

  /** Runs bin/tsrun with a pipe as its fd 3 (as podman passes a socket-activation fd); returns what came through it. */
  function withPipeOn3(args: string[]): Promise<{ code: number | null; fd3: string; stderr: string }> {
    return new Promise((res) => {
      const c = spawn(BIN, args, { env: tsrunEnvVars(), stdio: ['ignore', 'ignore', 'pipe', 'pipe'] });
      let fd3 = '';
      let stderr = '';
      (c.stdio[3] as NodeJS.ReadableStream).on('data', (d) => (fd3 += String(d)));
      c.stderr!.on('data', (d) => (stderr += String(d)));
      c.on('close', (code) => res({ code, fd3, stderr }));
    });
  }

  it('--preserve-fds N: the caller\'s fds 3..3+N-1 reach the container on run, run -d, create/start and exec; tsrun\'s own never do', async () => {
    const run = await withPipeOn3(['run', '--rm', '--preserve-fds', '1', 'busybox', 'sh', '-c', 'echo through-run >&3; ls /proc/self/fd/ | tr "\\n" " " >&3']);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    // 0-2, the pipe on 3, and ls's own directory fd: nothing of tsrun's
    expect(run.fd3).toBe('through-run\n0 1 2 3 4 ');
    expect(tsrun(['run', '-d', '--name', 'cli-pfd-x', 'busybox', 'sleep', '60']).code).toBe(0);
    const exec = await withPipeOn3(['exec', '--preserve-fds', '1', 'cli-pfd-x', 'sh', '-c', 'echo through-exec >&3']);
    expect(exec.stderr).toBe('');
    expect(exec.fd3).toBe('through-exec\n');
    // create/start, as podman calls it: the init holds the pipe until start lets the command run
    const dir = mkdtempSync(join(tmpdir(), 'tsrun-pfd-'));
    try {
      cpSync(testEnv().rootfs.probe, join(dir, 'rootfs'), { recursive: true, verbatimSymlinks: true });
      const cfg = { ociVersion: '1.2.0', process: { args: ['/bin/sh', '-c', 'echo through-create >&3'], cwd: '/', user: { uid: 0, gid: 0 }, env: ['PATH=/bin'] }, root: { path: 'rootfs' }, mounts: [{ destination: '/proc', type: 'proc', source: 'proc' }], linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }] } };
      writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
      const c = spawn(BIN, ['create', '--preserve-fds', '1', '--bundle', dir, 'cli-pfd'], { env: tsrunEnvVars(), stdio: ['ignore', 'ignore', 'ignore', 'pipe'] });
      let got = '';
      (c.stdio[3] as NodeJS.ReadableStream).on('data', (d) => (got += String(d)));
      const closed = new Promise((r) => (c.stdio[3] as NodeJS.ReadableStream).on('end', r));
      expect(await new Promise((r) => c.on('exit', r))).toBe(0);
      expect(tsrun(['start', 'cli-pfd']).code).toBe(0);
      await closed;
      expect(got).toBe('through-create\n');
    } finally {
      tsrun(['delete', '--force', 'cli-pfd']);
      rmSync(dir, { recursive: true, force: true });
    }
    // without fd 3 from the caller, Node's own epoll fd sits there: refused, not passed
    const none = tsrun(['run', '--rm', '--preserve-fds', '1', 'busybox', 'true']);
    expect(none.code).toBe(125);
    expect(none.stderr).toMatch(/^tsrun: --preserve-fds 1: fd 3 was not passed by the caller \(EBADF\)/);
    // run -d: tsrun-monitor gets the caller's fds over its socket (SCM_RIGHTS) and hands them to
    // the init; neither it nor its keeper keeps a copy: once the container closes its fd 3 the
    // pipe ends, while the container, its monitor and keeper still run
    const det = await Promise.race([
      withPipeOn3(['run', '-d', '--name', 'cli-pfd-d', '--preserve-fds', '1', 'busybox', 'sh', '-c', 'echo through-run-d >&3; ls /proc/self/fd/ | tr "\\n" " " >&3; exec 3>&-; sleep 60']),
      new Promise<never>((_, rej) => setTimeout(() => rej(new Error('the pipe stayed open: a copy of fd 3 outside the container')), 10_000)),
    ]);
    expect(det.stderr).toBe('');
    expect(det.code).toBe(0);
    expect(det.fd3).toBe('through-run-d\n0 1 2 3 4 ');
    expect(JSON.parse(tsrun(['state', 'cli-pfd-d']).stdout).status).toBe('running');
    expect(tsrun(['rm', '-f', 'cli-pfd-d']).code).toBe(0);
  });

  it('run -d --preserve-fds 3: three pipes, each the container\'s fd of the same number (the monitor receives them at numbers the init\'s targets overlap)', async () => {
    const got = await new Promise<{ code: number | null; out: string[]; stderr: string }>((res) => {
      const c = spawn(BIN, ['run', '-d', '--rm', '--preserve-fds', '3', 'busybox', 'sh', '-c', 'for n in 3 4 5; do echo "fd $n" >&$n; done'], { env: tsrunEnvVars(), stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe', 'pipe'] });
      const out = ['', '', ''];
      let stderr = '';
      [3, 4, 5].forEach((n, i) => (c.stdio[n] as NodeJS.ReadableStream).on('data', (d) => (out[i] += String(d))));
      c.stderr!.on('data', (d) => (stderr += String(d)));
      c.on('close', (code) => res({ code, out, stderr }));
    });
    expect(got.stderr).toBe('');
    expect(got.code).toBe(0);
    expect(got.out).toEqual(['fd 3\n', 'fd 4\n', 'fd 5\n']);
  });

  it('events --stats: one JSON object in runc\'s events format, its counters the kernel\'s; streaming gives stats and oom events until the container stops', async () => {
    const r = tsrun(['run', '-d', '--name', 'cli-ev', '--memory', '64m', '--pids-limit', '50', 'busybox', 'sh', '-c', 'sleep 60 & sleep 60 & sleep 60 & wait']);
    expect(r.code).toBe(0);
    const id = r.stdout.trim();
    const pid = JSON.parse(tsrun(['state', 'cli-ev']).stdout).pid as number;
    for (let i = 0; i < 50 && cgroupFile(pid, 'pids', 'pids.current') !== '4'; i++) spawnSync('sleep', ['0.05']);
    const e = tsrun(['events', '--stats', 'cli-ev']);
    expect(e.stderr).toBe('');
    expect(e.code).toBe(0);
    expect(e.stdout.trim().split('\n')).toHaveLength(1);
    const ev = JSON.parse(e.stdout);
    expect(ev).toMatchObject({ type: 'stats', id });
    expect(Object.keys(ev.data)).toEqual(['cpu', 'memory', 'pids', 'blkio', 'hugetlb']);
    // sh and its three sleeps, as the kernel counts them
    expect(ev.data.pids).toEqual({ current: 4, limit: 50 });
    expect(Number(cgroupFile(pid, 'pids', 'pids.current'))).toBe(4);
    expect(ev.data.memory.usage.limit).toBe(64 * 1024 * 1024);
    expect(ev.data.memory.usage.usage).toBeGreaterThan(0);
    expect(ev.data.cpu.usage.total).toBeGreaterThan(0);
    // v1 writes an unlimited kmem limit as a page-rounded LONG_MAX: printed exactly, not as a double
    if (ev.data.memory.kernel) expect(e.stdout).toContain(`"kernel":{"limit":${cgroupFile(pid, 'memory', 'memory.kmem.limit_in_bytes')}`);
    for (const bad of [['--interval', '0s'], ['--interval', 'soon']]) {
      const x = tsrun(['events', ...bad, 'cli-ev']);
      expect(x.code).toBe(125);
      expect(x.stderr).toMatch(/--interval/);
    }
    const none = tsrun(['events', '--stats', 'no-such-container']);
    expect(none.code).not.toBe(0);
    expect(none.stderr).toMatch(/events: no running container "no-such-container"/);

    // streaming: a stats event each interval and one oom event per OOM kill, until the container stops
    const o = tsrun(['run', '-d', '--name', 'cli-ev-oom', '--memory', '16m', '--memory-swap', '16m', 'busybox', 'sh', '-c', 'sleep 1; head -c 100m /dev/zero | tail; sleep 60']);
    expect(o.code).toBe(0);
    // its memory cgroup, read while sh sleeps: the OOM killer may end sh too, and the dir stays until rm
    const oomControl = join(cgroupDir(JSON.parse(tsrun(['state', 'cli-ev-oom']).stdout).pid as number, 'memory'), 'memory.oom_control');
    const stream = spawn(BIN, ['events', '--interval', '300ms', 'cli-ev-oom'], { env: tsrunEnvVars(), stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    stream.stdout.on('data', (d: Buffer) => (text += d.toString()));
    const done = new Promise<number | null>((res) => stream.on('exit', (c) => res(c)));
    for (let i = 0; i < 100 && !text.includes('"type":"oom"'); i++) await new Promise((res) => setTimeout(res, 100));
    // the kernel's count: the OOM killer may end more than one process (head and tail both)
    const kills = Number(/^oom_kill (\d+)$/m.exec(readFileSync(oomControl, 'utf8'))?.[1]);
    expect(tsrun(['rm', '-f', 'cli-ev-oom']).code).toBe(0);
    const code = await Promise.race([done, new Promise((res) => setTimeout(() => res('still running'), 5000))]);
    expect(code).toBe(0);
    const lines = text.trim().split('\n').map((l) => JSON.parse(l));
    // one event per kill the stream saw before the container went (a kill in its last interval may be missed)
    const ooms = lines.filter((l) => l.type === 'oom');
    expect(ooms.length).toBeGreaterThanOrEqual(1);
    expect(ooms.length).toBeLessThanOrEqual(kills);
    for (const e of ooms) expect(e).toEqual({ type: 'oom', id: o.stdout.trim() });
    expect(lines.filter((l) => l.type === 'stats').length).toBeGreaterThanOrEqual(2);
    expect(tsrun(['rm', '-f', 'cli-ev']).code).toBe(0);
  });
});
