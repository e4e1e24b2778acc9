// `tsrun audit` on the real kernel: every verdict comes from /proc/PID and the cgroup files,
// so a limit changed behind tsrun's back shows, and containers of other runtimes (runc,
// podman) are audited by pid the same way. Nothing on the host is written: the sensitive
// mount is /boot read-only, the "docker.sock" is a socket made in a temp dir, the user
// namespace's account files are a private copy (TSRUN_ID_PREFIX).
import { spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeKernel, leaks, testEnv, tsrun, type Result } from './helpers.js';
import { describeEngine, removeCgroupTree, restoreHost, snapshotHost, topCgroups, unmountAll, ok, run, type HostSnapshot } from '../engines/helpers.js';

interface Row {
  id: string;
  idCurrent: string;
  title: string;
  status: string;
  detail: string;
  container?: string;
}

let prefix = '';
let tmp = '';
let server: Server | undefined;
const started: number[] = [];
const HARD_FLAGS = ['--pids-limit', '50', '-m', '64m', '--cpu-shares', '512', '--read-only', '--security-opt', 'no-new-privileges', '--ulimit', 'nofile=1024:2048', '--userns-remap', 'default'];
const env = () => ({ TSRUN_ID_PREFIX: prefix });
const ts = (args: string[]): Result => tsrun(args, { env: env() });

function audit(args: string[]): { code: number | null; rows: Row[]; stderr: string } {
  const r = ts(['audit', '--json', ...args]);
  return { code: r.code, rows: r.stdout ? (JSON.parse(r.stdout) as Row[]) : [], stderr: r.stderr };
}

/** a live process (a zombie waiting for its monitor to reap it is gone for this purpose) */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^[ZX]/.test(stat.slice(stat.lastIndexOf(')') + 2));
  } catch {
    return false;
  }
}

const byId = (rows: Row[], container?: string) => Object.fromEntries(rows.filter((r) => r.container === container).map((r) => [r.id, r]));

function pidOf(name: string): number {
  const r = ts(['state', name]);
  expect(r.stderr).toBe('');
  return (JSON.parse(r.stdout) as { pid: number }).pid;
}

describeKernel('tsrun audit reads the kernel', () => {
  beforeAll(async () => {
    prefix = mkdtempSync(join(tmpdir(), 'tsrun-audit-ids-'));
    mkdirSync(join(prefix, 'etc'));
    for (const f of ['passwd', 'group', 'shadow', 'gshadow']) copyFileSync(`/etc/${f}`, join(prefix, 'etc', f));
    tmp = mkdtempSync(join(tmpdir(), 'tsrun-audit-'));
    // a unix socket named as docker's: CIS 5.31 is about the name's meaning, not a real daemon
    const sock = join(tmp, 'docker.sock');
    server = createServer();
    await new Promise<void>((res) => server!.listen(sock, res));
    const hard = ts(['run', '-d', '--name', 'audit-hard', ...HARD_FLAGS, 'busybox', 'sleep', '300']);
    // the remap user is made in the test's private copy of the account files, and says so
    expect(hard.stderr.replace(/^tsrun: --userns-remap default: created the system user "tsrun"[^\n]*\n/, '')).toBe('');
    const loose = ts(['run', '-d', '--name', 'audit-loose', '--network', 'host', '--privileged', '-v', '/boot:/hostboot:ro', '-v', `${sock}:/run/docker.sock`, 'busybox', 'sleep', '300']);
    // --privileged's warning, and the capabilities this host's root lacks (CAP_SYS_RESOURCE here)
    expect(loose.stderr).toMatch(/^warning: --privileged: [^\n]*\n(tsrun: warning: every capability asked for, but [^\n]*\n)?$/);
    started.push(pidOf('audit-hard'), pidOf('audit-loose'));
  });

  afterAll(async () => {
    ts(['rm', '-f', 'audit-hard', 'audit-loose']);
    await new Promise<void>((res) => (server ? server.close(() => res()) : res()));
    rmSync(tmp, { recursive: true, force: true });
    rmSync(prefix, { recursive: true, force: true });
    // other test runs may share this host: judge our own processes by pid, the rest by leaks()
    const deadline = Date.now() + 5000;
    while (started.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(started.filter(alive)).toEqual([]);
    expect(leaks().filter((l) => !l.startsWith('process:'))).toEqual([]);
  });

  it('each container check: the hardened container passes, the loose one warns', () => {
    const { code, rows, stderr } = audit(['audit-hard', 'audit-loose']);
    expect(stderr).toBe('');
    expect(code).toBe(1);
    const hard = byId(rows, 'audit-hard');
    const loose = byId(rows, 'audit-loose');
    const pairs: [string, RegExp][] = [
      ['5.3', /beyond docker's default: .*SYS_ADMIN/],
      ['5.4', /privileged: every capability.*no seccomp.*every device/],
      ['5.5', /host \/boot on \/hostboot \(ro\)/],
      ['5.9', /shares the host's net namespace/],
      ['5.10', /memory.limit_in_bytes = \d+ \(unlimited\)/],
      ['5.11', /cpu.shares = 1024/],
      ['5.12', /\/ is overlay rw/],
      ['5.17', /a \*:\* rwm/],
      ['5.21', /Seccomp: 0/],
      ['5.25', /NoNewPrivs: 0/],
      ['5.28', /pids.max = max/],
      ['5.30', /container root is host root/],
      ['5.31', /docker.sock on \/run\/docker.sock/],
    ];
    for (const [id, why] of pairs) {
      expect({ id, status: hard[id]?.status }).toEqual({ id, status: 'PASS' });
      expect({ id, status: loose[id]?.status }).toEqual({ id, status: 'WARN' });
      expect(loose[id]!.detail).toMatch(why);
    }
    expect(hard['5.28']!.detail).toMatch(/pids.max = 50$/);
    expect(hard['5.10']!.detail).toMatch(/= 67108864$/);
    expect(hard['5.18']).toMatchObject({ status: 'PASS', detail: expect.stringContaining('nofile=1024:2048') });
    expect(loose['5.18']).toMatchObject({ status: 'INFO', detail: expect.stringContaining("tsrun's own, inherited") });
    expect(hard['5.30']!.detail).toMatch(/uid_map 0 \d+ 65536/);
    expect(loose['5.9']!.idCurrent).toBe('5.10');
  });

  it('explain --summary predicts what audit then reads from the kernel', () => {
    const r = ts(['explain', '--summary', '--json', ...HARD_FLAGS, 'busybox', 'sleep', '300']);
    expect(r.stderr).toBe('');
    const summary = Object.fromEntries((JSON.parse(r.stdout) as { control: string; on: boolean; source: string }[]).map((x) => [x.control, x]));
    const hard = byId(audit(['audit-hard']).rows, 'audit-hard');
    const pairs: [string, string][] = [['pids limit', '5.28'], ['memory', '5.10'], ['cpu', '5.11'], ['read-only rootfs', '5.12'], ['no_new_privs', '5.25'], ['userns', '5.30'], ['seccomp', '5.21'], ['ulimits', '5.18'], ['net namespace', '5.9']];
    for (const [control, id] of pairs) expect({ control, on: summary[control]?.on, audit: hard[id]?.status }).toEqual({ control, on: true, audit: 'PASS' });
    expect(summary['pids limit']!.source).toBe('flag --pids-limit');
  });

  it('a limit changed behind tsrun\'s back: audit reports the kernel\'s value', () => {
    const cg = readFileSync(`/proc/${pidOf('audit-hard')}/cgroup`, 'utf8');
    const path = /^\d+:pids:(.*)$/m.exec(cg)?.[1];
    expect(path).toBeTruthy();
    const file = join('/sys/fs/cgroup/pids', path!, 'pids.max');
    writeFileSync(file, '33');
    expect(byId(audit(['audit-hard']).rows, 'audit-hard')['5.28']).toMatchObject({ status: 'PASS', detail: `${file} = 33` });
    writeFileSync(file, 'max');
    expect(byId(audit(['audit-hard']).rows, 'audit-hard')['5.28']).toMatchObject({ status: 'WARN', detail: `${file} = max (a fork bomb reaches the host's limit)` });
  });

  it('text output: docker-bench lines with both numberings and a score; no arguments = host + running containers', () => {
    const r = ts(['audit']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^\[INFO\] host: CIS 2/m);
    expect(r.stdout).toMatch(/^\[PASS\] 2\.13 \(2\.15\) - Ensure live restore is enabled$/m);
    expect(r.stdout).toMatch(/^\[INFO\] container audit-hard \(pid \d+\)/m);
    expect(r.stdout).toMatch(/^\[WARN\] 5\.4  \(5\.5\)  - Ensure that privileged containers are not used$/m);
    expect(r.stdout).toMatch(/^\[INFO\] Checks: \d+\n\[INFO\] Score: -?\d+\n$/m);
  });

  it('bad input: an unknown container or pid is a one-line error, exit 125', () => {
    expect(ts(['audit', 'no-such-audit'])).toMatchObject({ code: 125, stdout: '', stderr: expect.stringMatching(/^tsrun: no such container: "no-such-audit"/) });
    expect(ts(['audit', '--pid', '999999999'])).toMatchObject({ code: 125, stderr: 'tsrun: --pid 999999999: ESRCH (no such process)\n' });
    // pid 1 here holds CAP_SYS_RESOURCE, which root in this sandbox lacks: ptrace(2) access checks refuse
    const init = readFileSync('/proc/1/status', 'utf8');
    const mine = readFileSync('/proc/self/status', 'utf8');
    const capPrm = (s: string) => BigInt(`0x${/CapPrm:\s*([0-9a-f]+)/.exec(s)![1]}`);
    if ((capPrm(init) & ~capPrm(mine)) !== 0n) expect(ts(['audit', '--pid', '1'])).toMatchObject({ code: 125, stdout: '', stderr: 'tsrun: --pid 1: /proc/1: EACCES (permission denied) (ptrace-read access denied: it holds capabilities this root lacks, or an LSM refuses)\n' });
    expect(ts(['audit', '--pid', 'x1'])).toMatchObject({ code: 125, stderr: expect.stringContaining('--pid "x1": expected a process id') });
  });

  it('--host alone: exit 0 when nothing warns (the workshop\'s config, isolated networks)', () => {
    const cfg = join(tmp, 'config.json');
    writeFileSync(cfg, JSON.stringify({ 'userns-remap': 'default', 'no-new-privileges': true, icc: false, 'live-restore': true, 'default-ulimits': { nofile: { Name: 'nofile', Soft: 1024, Hard: 2048 } } }));
    const r = ts(['audit', '--host', '--config', cfg]);
    expect(r.stderr).toBe('');
    expect(r.stdout).not.toContain('[WARN]');
    expect(r.code).toBe(0);
    expect(ts(['audit', '--host']).code).toBe(1);
  });
});

// A container started by runc, audited by pid: tsrun has no record of it.
describeKernel('tsrun audit --pid: a runc container', () => {
  const CG = 'tsrun-audit-runc';
  let dir = '';
  const runc = (args: string[]) => run('runc', ['--root', join(dir, 'state'), ...args]);
  afterAll(() => {
    runc(['kill', 'audit-runc', 'KILL']);
    runc(['delete', '--force', 'audit-runc']);
    const left = topCgroups(CG).flatMap(removeCgroupTree);
    rmSync(dir, { recursive: true, force: true });
    expect(left).toEqual([]);
  });

  it('reads runc\'s limits and its missing seccomp filter from the kernel', () => {
    dir = mkdtempSync(join(tmpdir(), 'tsrun-audit-runc-'));
    const bundle = join(dir, 'bundle');
    mkdirSync(bundle);
    cpSync(testEnv().rootfs.busybox, join(bundle, 'rootfs'), { recursive: true, verbatimSymlinks: true });
    ok('runc', ['spec', '--bundle', bundle]);
    const config = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8'));
    config.process.terminal = false;
    config.process.args = ['sleep', '300'];
    config.linux.cgroupsPath = `/${CG}/c1`;
    config.linux.resources = { ...config.linux.resources, pids: { limit: 77 } };
    writeFileSync(join(bundle, 'config.json'), JSON.stringify(config));
    // the detached container inherits runc's stdio: pipes would keep spawnSync waiting for EOF
    const log = join(dir, 'runc.log');
    const r = spawnSync('runc', ['--root', join(dir, 'state'), '--log', log, 'run', '--detach', '--bundle', bundle, 'audit-runc'], { stdio: ['ignore', 'ignore', 'ignore'], timeout: 30_000 });
    expect({ status: r.status, log: existsSync(log) ? readFileSync(log, 'utf8') : '' }).toEqual({ status: 0, log: '' });
    const pid = JSON.parse(runc(['state', 'audit-runc']).stdout).pid as number;
    const { code, rows } = audit(['--pid', String(pid)]);
    expect(code).toBe(1);
    const v = byId(rows, `pid ${pid}`);
    expect(v['5.28']).toMatchObject({ status: 'PASS', detail: `/sys/fs/cgroup/pids/${CG}/c1/pids.max = 77` });
    // runc's sample spec has no seccomp section: the kernel shows no filter
    expect(v['5.21']).toMatchObject({ status: 'WARN', detail: `/proc/${pid}/status Seccomp: 0 (no filter)` });
    expect(v['5.9']!.status).toBe('PASS');
    expect(v['5.12']!.detail).toMatch(/ ro /);
    expect(v['5.3']!.detail).toMatch(/has 3 capabilities/);
    expect(v['5.24']).toMatchObject({ status: 'PASS', detail: `own cgroup: /${CG}/c1` });
  });
});

// A container started by podman (with its own storage; runc as its runtime: crun, podman's
// default, is not installed here and refuses hybrid cgroups anyway, see design.md).
describeEngine('tsrun audit --pid: a podman container', ['podman', 'conmon', 'runc'], () => {
  const CG = 'tsrun-audit-podman';
  const HOST_PATHS = ['/run/containers', '/run/containers/networks', '/etc/containers/networks', '/run/netns'];
  let dir = '';
  let before: HostSnapshot;
  let base: string[] = [];
  let penv: Record<string, string> = {};
  const podman = (args: string[]) => run('podman', [...base, ...args], { env: penv, timeout: 60_000 });
  beforeAll(() => {
    before = snapshotHost([CG], HOST_PATHS);
    dir = mkdtempSync(join(tmpdir(), 'tsrun-audit-podman-'));
    const conf = join(dir, 'containers.conf');
    writeFileSync(
      conf,
      ['[containers]', 'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]', '[engine]', 'cgroup_manager = "cgroupfs"', 'events_logger = "file"', `events_logfile_path = "${join(dir, 'events.log')}"`, `tmp_dir = "${join(dir, 'tmp')}"`, '[network]', `network_config_dir = "${join(dir, 'networks')}"`, ''].join('\n'),
    );
    penv = { CONTAINERS_CONF: conf };
    base = ['--root', join(dir, 'storage'), '--runroot', join(dir, 'runroot')];
    const im = spawnSync('sh', ['-c', `tar -C '${testEnv().rootfs.busybox}' -c . | podman ${base.join(' ')} import - localhost/audit-bb:latest`], { env: { ...process.env, ...penv }, encoding: 'utf8' });
    expect(im.status).toBe(0);
  }, 120_000);

  afterAll(() => {
    podman(['rm', '--all', '--force', '--time', '0']);
    podman(['rmi', '--all', '--force']);
    podman(['system', 'reset', '--force']);
    const leftMounts = unmountAll(dir).filter((m) => !m.endsWith('/storage/overlay'));
    const leftHost = restoreHost(before, [CG]);
    rmSync(dir, { recursive: true, force: true });
    expect({ leftMounts, leftHost, dir: existsSync(dir) }).toEqual({ leftMounts: [], leftHost: [], dir: false });
  });

  it('one podman container passes where the other warns', () => {
    const common = ['run', '-d', '--runtime', 'runc', '--network', 'none', '--cgroup-parent', `/${CG}`];
    expect(podman([...common, '--name', 'pa', '--pids-limit', '66', '--read-only', '--security-opt', 'no-new-privileges', 'localhost/audit-bb:latest', 'sleep', '300']).code).toBe(0);
    expect(podman([...common, '--name', 'pb', '--pids-limit', '0', '--ipc', 'host', '--uts', 'host', '--pid', 'host', 'localhost/audit-bb:latest', 'sleep', '300']).code).toBe(0);
    const pa = Number(podman(['inspect', '--format', '{{.State.Pid}}', 'pa']).stdout.trim());
    const pb = Number(podman(['inspect', '--format', '{{.State.Pid}}', 'pb']).stdout.trim());
    const { rows } = audit(['--pid', String(pa), '--pid', String(pb)]);
    const a = byId(rows, `pid ${pa}`);
    const b = byId(rows, `pid ${pb}`);
    for (const id of ['5.12', '5.15', '5.16', '5.20', '5.25', '5.28']) {
      expect({ id, a: a[id]?.status, b: b[id]?.status }).toEqual({ id, a: 'PASS', b: 'WARN' });
    }
    expect(a['5.28']!.detail).toMatch(new RegExp(`^/sys/fs/cgroup/pids/${CG}/libpod-[0-9a-f]{64}/pids.max = 66$`));
    // podman's default set is smaller than docker's; the kernel's bounding set shows it
    expect(a['5.3']!.status).toBe('PASS');
    expect(a['5.21']!.status).toBe('PASS');
  });
});
