// The in-guest suite on a pure cgroup v2 kernel: small, because Node runs ~20× slower under
// TCG. Prints "ok"/"not ok" lines the host test reads; exits with the number of failures.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const dist = new URL('../../dist/src/', import.meta.url);
const { CgroupManager, setFrozen, wasOomKilled } = await import(new URL('controls/cgroups/manager.js', dist).href);
const { hostLayout } = await import(new URL('controls/cgroups/mode.js', dist).href);

const PARENT = '/tsrun-vm';
const read = (p) => readFileSync(p, 'utf8');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let n = 0;
let failures = 0;

function spec(resources) {
  return {
    ociVersion: '1.2.0',
    process: { user: { uid: 0, gid: 0 }, args: ['sh'], cwd: '/' },
    root: { path: 'rootfs' },
    annotations: { 'org.tsrun.cgroup-parent': PARENT },
    linux: { namespaces: [], resources },
  };
}

function start(name, resources, workload) {
  const m = new CgroupManager(spec(resources), name);
  m.create({ warn: (w) => console.log(`# warning: ${w}`) });
  const child = spawn('sh', ['-c', 'read _ && exec sh -c "$0"', workload], { stdio: ['pipe', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  child.stdout.resume();
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  m.join(child.pid);
  child.stdin.write('go\n');
  return { m, child, exited, stderr: () => err };
}

async function test(name, fn) {
  n++;
  const t0 = Date.now();
  try {
    const note = await fn();
    console.log(`ok ${n} - ${name}${note ? ` # ${note}` : ''} (${Date.now() - t0} ms)`);
  } catch (e) {
    failures++;
    console.log(`not ok ${n} - ${name}: ${e?.stack ?? e}`);
  }
}

function check(cond, what) {
  if (!cond) throw new Error(what);
}

await test('mode is v2 with the usual controllers', () => {
  const l = hostLayout();
  check(l.mode === 'v2', `mode ${l.mode}`);
  for (const c of ['cpu', 'memory', 'pids', 'io', 'cpuset']) check(l.controllers[c]?.version === 2, `controller ${c}`);
  return `cgroup2 at ${l.unified.mountPoint}`;
});

await test('limits land in v2 files (pids.max, memory.max/swap.max, cpu.max, cpu.weight)', async () => {
  const r = start('files', { pids: { limit: 7 }, memory: { limit: 64 << 20, swap: 96 << 20 }, cpu: { shares: 1024, quota: 50000, period: 100000 } }, 'exit 0');
  await r.exited;
  const d = r.m.targets[0].dir;
  const got = ['pids.max', 'memory.max', 'memory.swap.max', 'cpu.max', 'cpu.weight'].map((f) => `${f}=${existsSync(join(d, f)) ? read(join(d, f)).trim() : '(absent)'}`).join(' ');
  r.m.destroy();
  check(got === `pids.max=7 memory.max=${64 << 20} memory.swap.max=${32 << 20} cpu.max=50000 100000 cpu.weight=100`, got);
  return got;
});

await test('a fork bomb is held at pids.max 20 and cgroup.kill removes it', async () => {
  const r = start('bomb', { pids: { limit: 20 } }, 'b() { b | b & }; b; sleep 60');
  const d = r.m.targets[0].dir;
  let max = 0;
  const t0 = Date.now();
  while (Date.now() - t0 < 2500) {
    max = Math.max(max, Number(read(join(d, 'pids.current'))));
    await sleep(50);
  }
  const refused = Number(/max (\d+)/.exec(read(join(d, 'pids.events')))?.[1] ?? 0);
  const k0 = Date.now();
  r.m.destroy();
  const killMs = Date.now() - k0;
  await r.exited;
  check(max > 5 && max <= 20, `pids.current peak ${max}`);
  check(refused > 0, `pids.events max ${refused}`);
  check(!existsSync(d), `${d} still exists`);
  return `peak ${max}, refused forks ${refused}, cleanup ${killMs} ms`;
});

await test('a memory hog under memory.max 32M is OOM-killed and reported', async () => {
  const r = start('oom', { memory: { limit: 32 << 20, swap: 32 << 20 } }, 'x=aaaaaaaa; while :; do x=$x$x; done');
  const res = await Promise.race([r.exited, sleep(60000).then(() => ({ code: 'timeout' }))]);
  const events = read(join(r.m.targets[0].dir, 'memory.events')).replace(/\n/g, ' ');
  const oom = wasOomKilled(r.m);
  r.m.destroy();
  check(res.signal === 'SIGKILL', `exit ${JSON.stringify(res)}`);
  check(oom, `memory.events: ${events}`);
  return events.trim();
});

await test('cleanup after SIGKILL of the main process leaves no process and no cgroup', async () => {
  const r = start('orphans', {}, 'sleep 60 & sleep 60 & sleep 60');
  const d = r.m.targets[0].dir;
  let pids = [];
  for (let i = 0; i < 100 && pids.length < 3; i++) {
    await sleep(50);
    pids = read(join(d, 'cgroup.procs')).split('\n').filter(Boolean).map(Number);
  }
  check(pids.length >= 3, `procs ${pids}`);
  r.child.kill('SIGKILL');
  await r.exited;
  check(read(join(d, 'cgroup.procs')).trim() !== '', 'orphans should still be inside');
  r.m.destroy();
  check(!existsSync(d), `${d} still exists`);
  await sleep(100);
  const alive = pids.filter((p) => existsSync(`/proc/${p}/stat`) && !/ Z /.test(read(`/proc/${p}/stat`)));
  check(alive.length === 0, `alive: ${alive}`);
  return `${pids.length} processes killed via cgroup.kill`;
});

await test('cgroup.freeze stops and resumes the group', async () => {
  const r = start('freeze', {}, 'while :; do :; done');
  const d = r.m.targets[0].dir;
  const usage = () => Number(/usage_usec (\d+)/.exec(read(join(d, 'cpu.stat')))[1]);
  await sleep(300);
  setFrozen(r.m.targets, true);
  const u0 = usage();
  await sleep(500);
  const frozen = usage() - u0;
  setFrozen(r.m.targets, false);
  const u1 = usage();
  await sleep(500);
  const thawed = usage() - u1;
  r.m.destroy();
  await r.exited;
  check(frozen < 5000, `frozen group used ${frozen} µs`);
  check(thawed > 50000, `thawed group used ${thawed} µs`);
  return `frozen ${frozen} µs / thawed ${thawed} µs of CPU in 500 ms`;
});

await test('tsrun run --pids-limit 20 holds a fork bomb on v2 and removes its cgroup', async () => {
  const root = new URL('../..', import.meta.url).pathname;
  const env = { ...process.env, TSRUN_DATA: '/tmp/tsrun-data', TSRUN_ROOT: '/tmp/tsrun-run' };
  const { spawnSync } = await import('node:child_process');
  // built on the host as a tar (test/vm/harness.ts): one file to read over 9p, imported
  // into the image store (no fork: ~300 fork+execs are slow under TCG)
  const c0 = Date.now();
  const b = spawnSync(join(root, 'bin/tsrun'), ['import', '--change', 'CMD ["sh"]', join(root, 'test/.cache/vm/busybox-rootfs.tar'), 'busybox'], { env, encoding: 'utf8' });
  check(b.status === 0, `import the busybox image: ${b.stderr}`);
  const copyMs = Date.now() - c0;
  const r0 = Date.now();
  const r = spawnSync(join(root, 'bin/tsrun'), ['run', '--rm', '--pids-limit', '20', 'busybox', 'sh', '-c',
    // after the bomb only shell builtins run (read, echo, case): they need no fork, so the
    // report does not depend on when the bomb dies down under slow emulation
    'mkfifo /tmp/f; b() { b | b & }; b; read -t 3 x <> /tmp/f; read m < /sys/fs/cgroup/pids.max; echo $m; ' +
      'while read l; do case $l in max*) echo $l;; esac; done < /sys/fs/cgroup/pids.events; read c < /proc/self/cgroup; echo $c; ' +
      'echo x > /sys/fs/cgroup/pids.max || echo refused'],
    { env, encoding: 'utf8', timeout: 120000 });
  const runMs = Date.now() - r0;
  const out = r.stdout.trim().split('\n');
  check(r.status === 0, `exit ${r.status} ${r.signal ?? ''}: ${r.stderr.slice(-500)}`);
  check(/can't fork/.test(r.stderr), 'no fork failure reported');
  check(out[0] === '20', `pids.max inside: ${out[0]}`);
  check(/^max [1-9]/.test(out[1] ?? ''), `pids.events inside: ${out[1]}`);
  check(out[2] === '0::/', `own cgroup as root: ${out[2]}`);
  check(out[3] === 'refused', `read-only: ${out[3]}`);
  check(!existsSync('/sys/fs/cgroup/tsrun'), '/sys/fs/cgroup/tsrun left behind');
  return `pids.max 20 inside, ${out[1]}, cgroup as ${out[2]}; image copy ${copyMs} ms, tsrun run ${runMs} ms`;
});

// AppArmor is active in this guest (Debian's kernel; cgroup-v2-vm.md) and apparmor_parser
// comes from the host's root over 9p. Each check runs with and without the profile.
const tsrunBin = () => join(new URL('../..', import.meta.url).pathname, 'bin/tsrun');
const guestEnv = () => ({ ...process.env, TSRUN_DATA: '/tmp/tsrun-data', TSRUN_ROOT: '/tmp/tsrun-run' });
// mount needs CAP_SYS_ADMIN and a seccomp filter that lets it through; sysrq-trigger needs the
// masked/read-only /proc paths off (else EROFS comes first): only AppArmor is left to refuse.
const AA_SCRIPT = 'cat /proc/self/attr/apparmor/current; mount -t tmpfs t /tmp; echo mount=$?; echo h > /proc/sysrq-trigger; echo sysrq=$?';
const AA_FLAGS = ['--cap-add', 'SYS_ADMIN', '--security-opt', 'seccomp=unconfined', '--security-opt', 'systempaths=unconfined'];

await test('AppArmor: tsrun-default is loaded and denies mount and /proc/sysrq-trigger with EACCES; apparmor=unconfined does not', async () => {
  const { spawnSync } = await import('node:child_process');
  const lsm = read('/sys/kernel/security/lsm').trim();
  check(lsm.split(',').includes('apparmor'), `LSMs ${lsm}`);
  const on = spawnSync(tsrunBin(), ['run', '--rm', ...AA_FLAGS, 'busybox', 'sh', '-c', AA_SCRIPT], { env: guestEnv(), encoding: 'utf8', timeout: 120000 });
  check(on.status === 0, `exit ${on.status}: ${on.stderr.slice(-500)}`);
  check(/^tsrun-default \(enforce\)$/m.test(on.stdout), `attr/current: ${on.stdout}`);
  check(/^mount=(?!0)\d+$/m.test(on.stdout) && /mount: .*Permission denied/.test(on.stderr), `mount: ${on.stdout} ${on.stderr}`);
  check(/^sysrq=1$/m.test(on.stdout) && /sysrq-trigger: Permission denied/.test(on.stderr), `sysrq: ${on.stdout} ${on.stderr}`);
  check(/^tsrun-default \(enforce\)$/m.test(read('/sys/kernel/security/apparmor/profiles')), 'profile not in the kernel');
  const off = spawnSync(tsrunBin(), ['run', '--rm', ...AA_FLAGS, '--security-opt', 'apparmor=unconfined', 'busybox', 'sh', '-c', AA_SCRIPT], { env: guestEnv(), encoding: 'utf8', timeout: 120000 });
  check(off.status === 0, `exit ${off.status}: ${off.stderr.slice(-500)}`);
  check(/^unconfined$/m.test(off.stdout), `attr/current unconfined: ${off.stdout}`);
  check(/^mount=0$/m.test(off.stdout) && /^sysrq=0$/m.test(off.stdout), `unconfined: ${off.stdout} ${off.stderr}`);
  return `${on.stdout.split('\n')[0]}: mount and sysrq denied; unconfined: allowed`;
});

await test('AppArmor: a bundle\'s process.apparmorProfile is honoured, and an exec gets it too', async () => {
  const { spawnSync } = await import('node:child_process');
  const { mkdirSync, writeFileSync } = await import('node:fs');
  const root = new URL('../..', import.meta.url).pathname;
  const b = '/tmp/aa-bundle';
  mkdirSync(join(b, 'rootfs'), { recursive: true });
  const t = spawnSync('tar', ['-xf', join(root, 'test/.cache/vm/busybox-rootfs.tar'), '-C', join(b, 'rootfs')], { encoding: 'utf8' });
  check(t.status === 0, `tar: ${t.stderr}`);
  writeFileSync(join(b, 'config.json'), JSON.stringify({
    ociVersion: '1.2.0',
    process: { user: { uid: 0, gid: 0 }, args: ['sh', '-c', 'cat /proc/self/attr/apparmor/current; sleep 30'], cwd: '/', env: ['PATH=/bin:/sbin:/usr/bin'], apparmorProfile: 'tsrun-default' },
    root: { path: 'rootfs' },
    mounts: [{ destination: '/proc', type: 'proc', source: 'proc' }],
    linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'ipc' }, { type: 'uts' }] },
  }));
  const name = 'aa-bundle';
  const r = spawnSync(tsrunBin(), ['run', '-d', '--name', name, '--bundle', b], { env: guestEnv(), encoding: 'utf8', timeout: 120000 });
  check(r.status === 0, `run -d: ${r.status} ${r.stderr}`);
  try {
    const x = spawnSync(tsrunBin(), ['exec', name, 'cat', '/proc/self/attr/apparmor/current'], { env: guestEnv(), encoding: 'utf8', timeout: 120000 });
    check(x.status === 0 && x.stdout.trim() === 'tsrun-default (enforce)', `exec: ${x.status} ${x.stdout} ${x.stderr}`);
    const logs = spawnSync(tsrunBin(), ['logs', name], { env: guestEnv(), encoding: 'utf8', timeout: 60000 });
    check(logs.stdout.trim() === 'tsrun-default (enforce)', `bundle process: ${logs.stdout} ${logs.stderr}`);
  } finally {
    spawnSync(tsrunBin(), ['rm', '-f', name], { env: guestEnv(), encoding: 'utf8', timeout: 60000 });
  }
  return 'bundle process and its exec: tsrun-default (enforce)';
});

console.log(`1..${n}`);
process.exit(failures);
