import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeEngine, mountsUnder, ok, processesMentioning, restoreHost, run, sandbox, snapshotHost, unmountAll, type HostSnapshot, type Sandbox } from './helpers.js';

// podman 4.3 (Debian 12) → conmon → tsrun, as `podman --runtime /path/to/tsrun`. podman keeps
// its storage in the sandbox (--root/--runroot), so the host's podman state is untouched.

const IMAGE = 'localhost/tsrun-busybox:latest';
const CGROUPS = ['libpod_parent'];
// netavark's IPAM database and podman's lock for the default network config dir; podman 4.3
// has no setting that moves the first one into the sandbox
const HOST_PATHS = ['/run/containers', '/run/containers/networks', '/run/containers/networks/ipam.db', '/etc/containers/networks', '/run/netns'];

let sb: Sandbox;
let before: HostSnapshot;
let env: Record<string, string>;
let base: string[];

function podman(args: string[], timeout = 60_000) {
  return run('podman', [...base, ...args], { env, timeout });
}

function podmanOk(args: string[]): string {
  return ok('podman', [...base, ...args], { env });
}

/** The calls tsrun got for one container (podman's ids are 64 hex digits). */
function callsFor(id: string): string[] {
  return sb.calls().filter((c) => c.includes(id));
}

describeEngine('podman drives tsrun (podman --runtime tsrun)', ['podman', 'conmon'], () => {
  beforeAll(() => {
    before = snapshotHost(CGROUPS, HOST_PATHS);
    sb = sandbox('podman');
    // Root here lacks CAP_SYS_RESOURCE: podman's default RLIMIT_NOFILE/NPROC of 1048576 cannot
    // be set by any runtime (EPERM), so the defaults go below the hard limits. tsrun must be
    // in runtime_supports_json to get --log/--log-format json, where podman reads errors.
    const conf = join(sb.dir, 'containers.conf');
    writeFileSync(
      conf,
      [
        '[containers]',
        'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]',
        '[engine]',
        'cgroup_manager = "cgroupfs"',
        'events_logger = "file"',
        `events_logfile_path = "${join(sb.dir, 'events.log')}"`,
        `tmp_dir = "${join(sb.dir, 'libpod-tmp')}"`,
        'runtime_supports_json = ["crun", "runc", "tsrun"]',
        '[engine.runtimes]',
        `tsrun = ["${sb.runtime}"]`,
        '[network]',
        `network_config_dir = "${join(sb.dir, 'networks')}"`,
        '',
      ].join('\n'),
    );
    env = { CONTAINERS_CONF: conf };
    base = ['--root', join(sb.dir, 'storage'), '--runroot', join(sb.dir, 'runroot'), '--runtime', sb.runtime];
    ok('sh', ['-c', `tar -C '${sb.rootfs}' -c . | podman ${base.join(' ')} import - ${IMAGE}`], { env });
  }, 120_000);

  afterAll(() => {
    if (!sb) return;
    podman(['rm', '--all', '--force', '--time', '0']);
    podman(['rmi', '--all', '--force']);
    const leftContainers = existsSync(sb.tsrunRoot) ? readdirSync(sb.tsrunRoot).filter((d) => !d.endsWith('.lock')) : [];
    const leftProcs = processesMentioning(sb.dir);
    // containers/storage keeps its overlay dir mounted on itself until told to let go
    podman(['system', 'reset', '--force']);
    const leftMounts = unmountAll(sb.dir);
    const leftHost = restoreHost(before, CGROUPS);
    if (mountsUnder(sb.dir).length === 0) rmSync(sb.dir, { recursive: true, force: true });
    expect({ leftContainers, leftProcs, leftHost }).toEqual({ leftContainers: [], leftProcs: [], leftHost: [] });
    // the storage's own self bind mount is podman's; anything else below the sandbox is a leak
    expect(leftMounts.filter((m) => !m.endsWith('/storage/overlay'))).toEqual([]);
  });

  it('podman run --rm IMAGE echo hi: conmon runs tsrun create, start and delete', () => {
    const r = podman(['run', '--rm', '--network', 'none', IMAGE, 'echo', 'hi']);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('hi\n');
    expect(r.code).toBe(0);
    const create = sb.calls().find((c) => / create /.test(c))!;
    expect(create).toMatch(/^--log-format=json --log \S+oci-log create --bundle \S+ --pid-file \S+ [0-9a-f]{64}$/);
    const id = create.split(' ').at(-1)!;
    expect(callsFor(id).map((c) => c.replace(/^--log-format=json --log \S+ /, '').split(' ')[0])).toEqual(['create', 'start', 'delete']);
    expect(existsSync(join(sb.tsrunRoot, id))).toBe(false);
  });

  it('delete --force of a container that is gone succeeds, as engines expect when cleaning up twice', () => {
    const gone = run(sb.runtime, ['delete', '--force', 'f'.repeat(64)]);
    expect(gone).toMatchObject({ code: 0, stdout: '', stderr: '' });
    const plain = run(sb.runtime, ['delete', 'f'.repeat(64)]);
    expect(plain.code).toBe(125);
    expect(plain.stderr).toMatch(/^tsrun: no such container: "f{64}"\n$/);
    // where engines read errors: one JSON object per line, the last msg is what they show
    const log = join(sb.dir, 'oci-log');
    expect(run(sb.runtime, ['--log-format=json', '--log', log, 'delete', 'f'.repeat(64)]).code).toBe(125);
    const lines = readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.at(-1)).toEqual({ level: 'error', msg: `no such container: "${'f'.repeat(64)}"`, time: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) });
  });

  it('the exit code and a missing command reach podman (127, with tsrun\'s message)', () => {
    expect(podman(['run', '--rm', '--network', 'none', IMAGE, 'sh', '-c', 'exit 7']).code).toBe(7);
    const r = podman(['run', '--rm', '--network', 'none', IMAGE, 'no-such-command']);
    expect(r.code).toBe(127);
    expect(r.stderr).toContain('tsrun: exec "no-such-command": No such file or directory');
  });

  it('a create that tsrun refuses: podman shows tsrun\'s message (read from --log, JSON) and nothing is left', () => {
    // root here lacks CAP_SYS_RESOURCE, so no runtime can raise this hard limit
    const r = podman(['run', '--rm', '--network', 'none', '--ulimit', 'nofile=1048576:1048576', IMAGE, 'true']);
    expect(r.code).toBe(126);
    expect(r.stderr).toMatch(/OCI runtime error: \S+tsrun: process\.rlimits\[\d\]: RLIMIT_NOFILE \(--ulimit nofile\) hard 1048576 is above/);
    expect(podmanOk(['ps', '-a', '-q'])).toBe('');
    expect(existsSync(sb.tsrunRoot) ? readdirSync(sb.tsrunRoot).filter((d) => !d.endsWith('.lock')) : []).toEqual([]);
  });

  it('the default devices open although podman\'s spec only says "deny all" in the device cgroup', () => {
    const r = podman(['run', '--rm', '--network', 'none', IMAGE, 'sh', '-c', 'echo x > /dev/null && head -c 4 /dev/urandom | wc -c && cat /dev/zero | head -c 2 | wc -c']);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('4\n2\n');
  });

  it('what podman asks for reaches the container: --user, --cap-drop, no-new-privileges, its seccomp profile, --read-only (tmpfs /tmp), --memory, --pids-limit', () => {
    const r = podman([
      'run', '--rm', '--network', 'none', '--user', '1000:1000', '--cap-drop', 'all', '--security-opt', 'no-new-privileges',
      '--read-only', '--memory', '32m', '--pids-limit', '50', IMAGE,
      'sh', '-c', 'id -u; grep -E "^(CapEff|NoNewPrivs|Seccomp):" /proc/self/status; touch /x 2>/dev/null || echo ro; touch /tmp/y && echo tmp-rw; cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max',
    ]);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('1000\nCapEff:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\nro\ntmp-rw\n33554432\n50\n');
  });

  it('podman\'s own network: tsrun joins the netns netavark prepared (linux.namespaces[].path)', () => {
    const r = podman(['run', '--rm', IMAGE, 'sh', '-c', 'ip -o -4 addr show eth0; readlink /proc/self/ns/net']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    // podman's default network is 10.88.0.0/16 on the bridge podman0
    expect(r.stdout).toMatch(/eth0\s+inet 10\.88\.\d+\.\d+\/16/);
    const hostNet = run('readlink', ['/proc/self/ns/net']).stdout.trim();
    expect(r.stdout.trim().split('\n').at(-1)).not.toBe(hostNet);
  });

  it('podman run -t: the pty goes to conmon over the console socket', () => {
    const r = podman(['run', '--rm', '-t', '--network', 'none', IMAGE, 'sh', '-c', 'tty; stty size']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^\/dev\/pts\/0\r\n/);
    const create = sb.calls().filter((c) => / create /.test(c)).at(-1)!;
    expect(create).toMatch(/ --console-socket \S+ /);
  });

  it('podman run -d, exec, ps, pause/unpause, stop (SIGTERM reaches the container), rm', () => {
    const started = podman(['run', '-d', '--network', 'none', IMAGE, 'sh', '-c', 'trap "exit 3" TERM; while :; do sleep 0.1; done']);
    expect(started.stderr).toBe('');
    const id = started.stdout.trim();
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    expect(JSON.parse(readFileSync(join(sb.tsrunRoot, id, 'state.json'), 'utf8'))).toMatchObject({ id, config: { linux: { cgroupsPath: `/libpod_parent/libpod-${id}` } } });

    expect(podman(['exec', id, 'echo', 'from exec']).stdout).toBe('from exec\n');
    // exec lands in the container's PID namespace: the container's sh is PID 1 there
    expect(podman(['exec', id, 'cat', '/proc/1/cmdline']).stdout).toBe('sh\0-c\0trap "exit 3" TERM; while :; do sleep 0.1; done\0');
    expect(podman(['exec', '-t', id, 'tty']).stdout).toMatch(/^\/dev\/pts\/\d+\r\n$/);
    const execCalls = callsFor(id).filter((c) => / exec /.test(c));
    expect(execCalls).toHaveLength(3);
    expect(execCalls[2]).toMatch(/ exec --pid-file \S+ --process \S+ --detach --tty --console-socket \S+ /);

    expect(podmanOk(['ps', '--format', '{{.ID}} {{.Status}}'])).toMatch(new RegExp(`^${id.slice(0, 12)} Up `));
    expect(podmanOk(['top', id, 'pid', 'args'])).toMatch(/1\s+sh -c trap/);

    podmanOk(['pause', id]);
    expect(podmanOk(['inspect', '--format', '{{.State.Status}}', id]).trim()).toBe('paused');
    expect(readFileSync(`/sys/fs/cgroup/freezer/libpod_parent/libpod-${id}/freezer.state`, 'utf8').trim()).toBe('FROZEN');
    podmanOk(['unpause', id]);
    expect(readFileSync(`/sys/fs/cgroup/freezer/libpod_parent/libpod-${id}/freezer.state`, 'utf8').trim()).toBe('THAWED');
    expect(callsFor(id).some((c) => c === `pause ${id}`) && callsFor(id).some((c) => c === `resume ${id}`)).toBe(true);

    const t0 = Date.now();
    const stop = podman(['stop', '--time', '20', id]);
    expect(stop.code).toBe(0);
    // the trap ran: SIGTERM was delivered, no SIGKILL after the 20 s grace period
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(podmanOk(['inspect', '--format', '{{.State.ExitCode}}', id]).trim()).toBe('3');
    expect(callsFor(id)).toContain(`kill ${id} 15`);
    expect(podman(['rm', id]).code).toBe(0);
    expect(callsFor(id).at(-1)).toBe(`delete --force ${id}`);
    expect(existsSync(join(sb.tsrunRoot, id))).toBe(false);
    expect(existsSync(`/sys/fs/cgroup/memory/libpod_parent/libpod-${id}`)).toBe(false);
    expect(podmanOk(['ps', '-a', '-q'])).toBe('');
  });

  it('podman rm -f of a paused container: tsrun thaws it so SIGKILL ends it', () => {
    const id = podmanOk(['run', '-d', '--network', 'none', IMAGE, 'sleep', '600']).trim();
    podmanOk(['pause', id]);
    const t0 = Date.now();
    expect(podman(['rm', '--force', '--time', '0', id]).code).toBe(0);
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(existsSync(join(sb.tsrunRoot, id))).toBe(false);
  });
});
