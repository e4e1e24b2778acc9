import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeEngine, type HostSnapshot, leftovers, ociArchive, ok, run, sandbox, type Sandbox, snapshotHost, stopDaemon } from './helpers.js';
import { until } from '../until.js';

// containerd 1.6 → containerd-shim-runc-v2 → tsrun, as `ctr run --runc-binary /path/to/tsrun`.
// The daemon is this test's own: its root, state and socket live in the sandbox, it is
// started here in the background and stopped by its pid.

const IMAGE = 'docker.io/library/tsrun-busybox:latest';
const CGROUPS = ['default']; // containerd's namespace "default" → cgroupsPath /default/<id>
// the shim's sockets (/run/containerd/s) and ctr's default fifo dir are fixed paths in 1.6
const HOST_PATHS = ['/run/containerd', '/run/containerd/s', '/run/containerd/fifo', '/run/containerd/runc'];

let sb: Sandbox;
let before: HostSnapshot;
let daemon: ChildProcess | undefined;
let sock: string;
let runcRoot: string;

function ctr(args: string[], timeout = 60_000) {
  return run('ctr', ['-a', sock, ...args], { timeout });
}

/** `ctr run` with tsrun as the shim's runc; its state root and fifos in the sandbox. */
function runArgs(): string[] {
  return ['--runc-binary', sb.runtime, '--runc-root', runcRoot, '--fifo-dir', join(sb.dir, 'fifo')];
}

/** The verbs tsrun got for one container, without the three global flags the shim always passes. */
function verbsFor(id: string): string[] {
  return sb
    .calls()
    .filter((c) => c.split(' ').includes(id))
    .map((c) => c.replace(/^--root \S+ --log \S+ --log-format json /, ''));
}

function taskStatus(id: string): string | undefined {
  const line = ctr(['task', 'ls']).stdout.split('\n').find((l) => l.startsWith(`${id} `));
  return line?.trim().split(/\s+/)[2];
}

describeEngine('containerd drives tsrun (ctr run --runc-binary tsrun)', ['containerd', 'containerd-shim-runc-v2', 'ctr', 'script'], () => {
  beforeAll(async () => {
    before = snapshotHost(CGROUPS, HOST_PATHS);
    sb = sandbox('containerd');
    sock = join(sb.dir, 'containerd.sock');
    runcRoot = join(sb.dir, 'runc-root');
    const conf = join(sb.dir, 'containerd.toml');
    writeFileSync(
      conf,
      [
        'version = 2',
        `root = "${join(sb.dir, 'root')}"`,
        `state = "${join(sb.dir, 'state')}"`,
        // no Kubernetes CRI and no snapshotters this host cannot use: a quicker, quieter start
        'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]',
        '[grpc]',
        `  address = "${sock}"`,
        '[ttrpc]',
        `  address = "${sock}.ttrpc"`,
        '[debug]',
        '  address = ""',
        '[metrics]',
        '  address = ""',
        '',
      ].join('\n'),
    );
    const log = openSync(join(sb.dir, 'containerd.log'), 'a');
    daemon = spawn('containerd', ['--config', conf], { stdio: ['ignore', log, log] });
    closeSync(log);
    await until(() => existsSync(sock) && ctr(['version']).code === 0, 20_000);
    const archive = ociArchive(sb.rootfs, sb.dir);
    ok('ctr', ['-a', sock, 'image', 'import', '--index-name', IMAGE, archive]);
  }, 120_000);

  afterAll(async () => {
    if (!sb) return;
    if (daemon && daemon.exitCode === null) {
      for (const id of ctr(['task', 'ls', '-q']).stdout.split('\n').filter(Boolean)) ctr(['task', 'rm', '-f', id]);
      for (const id of ctr(['container', 'ls', '-q']).stdout.split('\n').filter(Boolean)) ctr(['container', 'rm', id]);
      await stopDaemon(daemon, 10_000);
    }
    const leftContainers = existsSync(join(runcRoot, 'default')) ? readdirSync(join(runcRoot, 'default')).filter((d) => !d.endsWith('.lock')) : [];
    expect({ leftContainers, ...leftovers(sb, before, CGROUPS) }).toEqual({ leftContainers: [], leftProcs: [], leftMounts: [], leftHost: [] });
  }, 60_000);

  it('ctr run --rm IMAGE ID echo hi: the runc shim runs tsrun create, start, delete', () => {
    const r = ctr(['run', '--rm', ...runArgs(), IMAGE, 'ctd-hi', 'echo', 'hi']);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('hi\n');
    expect(r.code).toBe(0);
    const create = sb.calls().find((c) => c.endsWith(' ctd-hi'))!;
    expect(create).toMatch(new RegExp(`^--root ${runcRoot}/default --log \\S+/log\\.json --log-format json create --bundle \\S+ --pid-file \\S+/init\\.pid ctd-hi$`));
    expect(verbsFor('ctd-hi')[0]).toMatch(/^create /);
    expect(verbsFor('ctd-hi').slice(1)).toEqual(expect.arrayContaining(['start ctd-hi', 'delete ctd-hi']));
    expect(existsSync(join(runcRoot, 'default', 'ctd-hi'))).toBe(false);
  });

  it('the default devices open although the spec only says "deny all" in the device cgroup', () => {
    const r = ctr(['run', '--rm', ...runArgs(), IMAGE, 'ctd-dev', 'sh', '-c', 'echo x > /dev/null && head -c 4 /dev/urandom | wc -c']);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('4\n');
  });

  it('ctr run -t: the pty goes to the shim over the console socket', () => {
    // ctr wants a terminal of its own for -t: script(1) gives it one
    const r = run('script', ['-qec', `ctr -a ${sock} run --rm -t ${runArgs().join(' ')} ${IMAGE} ctd-tty tty`, '/dev/null']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('/dev/pts/0');
    expect(verbsFor('ctd-tty')[0]).toMatch(/^create --bundle \S+ --pid-file \S+ --console-socket \S+ ctd-tty$/);
  });

  it('run -d, task exec, task ps, pause/resume, kill (SIGTERM reaches it), rm', async () => {
    const id = 'ctd-bg';
    const r = ctr(['run', '-d', ...runArgs(), IMAGE, id, 'sh', '-c', 'trap "exit 3" TERM; while :; do sleep 0.1; done']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(taskStatus(id)).toBe('RUNNING');
    const state = JSON.parse(readFileSync(join(runcRoot, 'default', id, 'state.json'), 'utf8'));
    expect(state.config.linux.cgroupsPath).toBe(`/default/${id}`);

    expect(ctr(['task', 'exec', '--exec-id', 'e1', ...['--fifo-dir', join(sb.dir, 'fifo')], id, 'echo', 'from exec']).stdout).toBe('from exec\n');
    expect(verbsFor(id).find((v) => v.startsWith('exec '))).toMatch(/^exec --process \S+ --detach --pid-file \S+ ctd-bg$/);
    // ctr task ps lists what `tsrun ps --format json` reports: the init's host pid among them
    const ps = ctr(['task', 'ps', id]).stdout;
    expect(ps).toContain(String(state.pid));
    expect(verbsFor(id)).toContain(`ps --format json ${id}`);

    const freezer = `/sys/fs/cgroup/freezer/default/${id}/freezer.state`;
    expect(ctr(['task', 'pause', id]).code).toBe(0);
    expect(taskStatus(id)).toBe('PAUSED');
    expect(readFileSync(freezer, 'utf8').trim()).toBe('FROZEN');
    expect(ctr(['task', 'resume', id]).code).toBe(0);
    expect(taskStatus(id)).toBe('RUNNING');
    expect(readFileSync(freezer, 'utf8').trim()).toBe('THAWED');

    expect(ctr(['task', 'kill', id]).code).toBe(0);
    await until(() => taskStatus(id) === 'STOPPED');
    expect(verbsFor(id)).toContain(`kill ${id} 15`);
    const rm = ctr(['task', 'rm', id]);
    expect(rm.code).toBe(0);
    // the trap ran: exit 3, not 143 (killed by SIGTERM) or 137 (SIGKILL)
    expect(rm.stderr).toContain('exit with non-zero exit code 3');
    expect(ctr(['container', 'rm', id]).code).toBe(0);
    expect(existsSync(join(runcRoot, 'default', id))).toBe(false);
    expect(existsSync(`/sys/fs/cgroup/freezer/default/${id}`)).toBe(false);
  });

  it('task rm -f of a paused task: kill --all 9 thaws it, the shim sees it exit', () => {
    const id = 'ctd-paused';
    expect(ctr(['run', '-d', ...runArgs(), IMAGE, id, 'sleep', '600']).code).toBe(0);
    expect(ctr(['task', 'pause', id]).code).toBe(0);
    const t0 = Date.now();
    expect(ctr(['task', 'rm', '-f', id], 20_000).code).toBe(0);
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(ctr(['container', 'rm', id]).code).toBe(0);
    expect(existsSync(join(runcRoot, 'default', id))).toBe(false);
  });
});
