import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { BIN, describeKernel, leaks as allLeaks, testEnv, tsrun, tsrunEnvVars } from './helpers.js';

// OCI hooks (runtime-spec config.md "POSIX-platform Hooks", runtime.md "Lifecycle") on the
// real kernel: each hook is a host shell (or, for startContainer, the container's busybox
// shell) that appends one line to a log — which hook, the namespaces it runs in, whether it
// sees the host's root or the container's, its capabilities and the state it read on stdin.

interface Hook {
  path: string;
  args?: string[];
  env?: string[];
  timeout?: number;
}

let dirs: string[] = [];
// leaks() sees every tsrun-init on the machine, and other test runs share this host: an init
// counts as this file's when its cgroup names one of the containers made here (ids hooks-*)
let foreign = new Set<string>();
function mine(line: string): boolean {
  const pid = /^process: (\d+) /.exec(line)?.[1];
  if (!pid) return true;
  try {
    return readFileSync(`/proc/${pid}/cgroup`, 'utf8').includes('/hooks-');
  } catch {
    return false; // gone meanwhile
  }
}
const leaks = () => allLeaks().filter((l) => !foreign.has(l) && mine(l));

/** OCI create as engines call it: the init keeps the caller's stdio, so give it none to hold open. */
function create(dir: string, id: string): number | null {
  return spawnSync(BIN, ['create', '--bundle', dir, id], { env: tsrunEnvVars(), stdio: 'ignore' }).status;
}

/** A bundle of the probe image with the hook log directory bind-mounted at /hooklog. */
function bundle(hooks: Record<string, Hook[]>, args: string[] = ['true'], extra: Record<string, unknown> = {}): { dir: string; log: string } {
  const dir = mkdtempSync(join(tmpdir(), 'tsrun-hooks-'));
  dirs.push(dir);
  cpSync(testEnv().rootfs.probe, join(dir, 'rootfs'), { recursive: true, verbatimSymlinks: true });
  mkdirSync(join(dir, 'log'));
  writeFileSync(join(dir, 'log', 'log'), '');
  writeFileSync(
    join(dir, 'config.json'),
    JSON.stringify({
      ociVersion: '1.2.0',
      process: { args, cwd: '/', user: { uid: 0, gid: 0 }, env: ['PATH=/bin:/usr/bin'], capabilities: { bounding: ['CAP_KILL'], effective: ['CAP_KILL'], permitted: ['CAP_KILL'] } },
      root: { path: 'rootfs' },
      mounts: [
        { destination: '/proc', type: 'proc', source: 'proc' },
        { destination: '/hooklog', type: 'bind', source: join(dir, 'log'), options: ['rbind'] },
      ],
      linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'uts' }, { type: 'ipc' }, { type: 'network' }] },
      hooks,
      ...extra,
    }),
  );
  return { dir, log: join(dir, 'log', 'log') };
}

/** A hook that records itself: `kind netns mntns root-it-sees CapEff argv1 $HV state`. */
function recorder(kind: string, log: string, path = '/bin/sh'): Hook {
  const script = `printf '%s %s %s %s %s %s %s %s\\n' ${kind} "$(readlink /proc/self/ns/net)" "$(readlink /proc/self/ns/mnt)" "$([ -e /probe ] && echo container || echo host)" "$(grep CapEff /proc/self/status | cut -f2)" "$1" "\${HV:-unset}" "$(cat)" >> ${log}`;
  return { path, args: ['sh', '-c', script, 'argv0', `arg-${kind}`], env: [`HV=env-${kind}`] };
}

interface Line {
  kind: string;
  net: string;
  mnt: string;
  root: string;
  capEff: string;
  arg: string;
  env: string;
  state: Record<string, any>;
}

function lines(log: string): Line[] {
  return readFileSync(log, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const [kind, net, mnt, root, capEff, arg, env, ...state] = l.split(' ');
      return { kind: kind!, net: net!, mnt: mnt!, root: root!, capEff: capEff!, arg: arg!, env: env!, state: JSON.parse(state.join(' ')) };
    });
}

describeKernel('OCI hooks: order, namespaces, state on stdin, failures', () => {
  beforeAll(() => {
    foreign = new Set(allLeaks());
  });
  afterEach(() => {
    for (const c of JSON.parse(tsrun(['ps', '-a', '--format', 'json']).stdout || '[]')) tsrun(['rm', '-f', c.id]);
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
    dirs = [];
  });
  afterAll(() => expect(leaks()).toEqual([]));

  it('create/start/delete run all six in the spec\'s order, each in its namespaces, with args, env and the state', () => {
    const { dir, log } = bundle({}, ['sh', '-c', 'sleep 30']);
    const hooks = {
      prestart: [recorder('prestart', log)],
      createRuntime: [recorder('createRuntime', log)],
      createContainer: [recorder('createContainer', log)],
      // resolved and run in the container: its busybox, writing through the bind mount
      startContainer: [recorder('startContainer', '/hooklog/log')],
      poststart: [recorder('poststart', log)],
      poststop: [recorder('poststop', log)],
    };
    const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    cfg.hooks = hooks;
    cfg.annotations = { 'org.example/k': 'v' };
    writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));

    const id = 'hooks-all';
    expect(create(dir, id)).toBe(0);
    const pid = JSON.parse(tsrun(['state', id]).stdout).pid as number;
    expect(lines(log).map((l) => l.kind)).toEqual(['prestart', 'createRuntime', 'createContainer']);
    expect(tsrun(['start', id]).code).toBe(0);
    expect(lines(log).map((l) => l.kind)).toEqual(['prestart', 'createRuntime', 'createContainer', 'startContainer', 'poststart']);
    // an exec is no lifecycle event: no hook runs for it
    expect(tsrun(['exec', id, 'true']).code).toBe(0);
    expect(lines(log)).toHaveLength(5);
    const containerNet = readlinkSync(`/proc/${pid}/ns/net`);
    const containerMnt = readlinkSync(`/proc/${pid}/ns/mnt`);
    expect(tsrun(['kill', id, 'KILL']).code).toBe(0);
    for (let i = 0; i < 100 && JSON.parse(tsrun(['state', id]).stdout).status !== 'stopped'; i++) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
    expect(tsrun(['delete', id]).code).toBe(0);

    const got = lines(log);
    expect(got.map((l) => l.kind)).toEqual(['prestart', 'createRuntime', 'createContainer', 'startContainer', 'poststart', 'poststop']);
    const hostNet = readlinkSync('/proc/self/ns/net');
    const hostMnt = readlinkSync('/proc/self/ns/mnt');
    const by = Object.fromEntries(got.map((l) => [l.kind, l]));
    for (const k of ['prestart', 'createRuntime', 'poststart', 'poststop']) {
      expect(by[k], k).toMatchObject({ net: hostNet, mnt: hostMnt, root: 'host', arg: `arg-${k}`, env: `env-${k}` });
      expect(by[k]!.state).toEqual({ ociVersion: '1.2.0', id, status: k === 'poststop' ? 'stopped' : k === 'poststart' ? 'running' : 'creating', pid, bundle: dir, annotations: { 'org.example/k': 'v' } });
    }
    // createContainer: the container's namespaces, before pivot_root (the host's tree is still
    // there), with the init's full capabilities; the pid is as the container sees it
    expect(by.createContainer).toMatchObject({ net: containerNet, mnt: containerMnt, root: 'host', arg: 'arg-createContainer', env: 'env-createContainer' });
    expect(by.createContainer!.state).toMatchObject({ id, status: 'creating', pid: 1, bundle: dir });
    // startContainer: in the container's root, with the container's credentials (CAP_KILL only)
    expect(by.startContainer).toMatchObject({ net: containerNet, mnt: containerMnt, root: 'container', capEff: '0000000000000020', arg: 'arg-startContainer', env: 'env-startContainer' });
    expect(by.startContainer!.state).toMatchObject({ id, status: 'created', pid: 1 });
    expect(BigInt(`0x${by.createContainer!.capEff}`)).toBeGreaterThan(0x20n);
  });

  it('a failing prestart hook stops create: exit 125 naming the hook, nothing left, poststop still runs', () => {
    const { dir, log } = bundle({});
    const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    cfg.hooks = { prestart: [{ path: '/bin/sh', args: ['sh', '-c', 'echo boom >&2; exit 3'] }], poststop: [recorder('poststop', log)] };
    writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
    const r = tsrun(['create', '--bundle', dir, 'hooks-pre']);
    expect(r.code).toBe(125);
    expect(r.stderr).toMatch(/hook prestart\[0\] \/bin\/sh: exit status 3: boom/);
    expect(tsrun(['state', 'hooks-pre']).code).toBe(125);
    expect(lines(log).map((l) => [l.kind, l.state.status])).toEqual([['poststop', 'stopped']]);
    expect(leaks()).toEqual([]);
  });

  it('a prestart hook past its timeout is killed and the container is not created', () => {
    const { dir } = bundle({ createRuntime: [{ path: '/bin/sleep', args: ['sleep', '20'], timeout: 1 }] });
    const t0 = Date.now();
    const r = tsrun(['create', '--bundle', dir, 'hooks-slow']);
    expect(Date.now() - t0).toBeLessThan(6_000);
    expect(r.code).toBe(125);
    expect(r.stderr).toMatch(/hook createRuntime\[0\] \/bin\/sleep: timed out after 1 s/);
    expect(leaks()).toEqual([]);
  });

  it('createContainer: a failure, a timeout and a missing binary each stop create with their reason', () => {
    const fail = bundle({ createContainer: [{ path: '/bin/sh', args: ['sh', '-c', 'exit 4'] }] });
    let r = tsrun(['create', '--bundle', fail.dir, 'hooks-cc']);
    expect(r.code).toBe(125);
    expect(r.stderr).toMatch(/hook createContainer\[0\] \/bin\/sh: exit status 4/);
    const slow = bundle({ createContainer: [{ path: '/bin/sleep', args: ['sleep', '20'], timeout: 1 }] });
    const t0 = Date.now();
    r = tsrun(['create', '--bundle', slow.dir, 'hooks-cc']);
    expect(Date.now() - t0).toBeLessThan(6_000);
    expect(r.stderr).toMatch(/hook createContainer\[0\] \/bin\/sleep: timed out after 1 s/);
    const missing = bundle({ createContainer: [{ path: '/nonexistent/hook' }] });
    r = tsrun(['create', '--bundle', missing.dir, 'hooks-cc']);
    expect(r.stderr).toMatch(/hook createContainer\[0\] \/nonexistent\/hook: ENOENT/);
    expect(leaks()).toEqual([]);
  });

  it('startContainer failure ends the container before its command; run reports it', () => {
    const { dir, log } = bundle({}, ['sh', '-c', 'echo command-ran >> /hooklog/log']);
    const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    cfg.hooks = { startContainer: [{ path: '/bin/sh', args: ['sh', '-c', 'exit 5'] }] };
    writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
    const r = tsrun(['run', '--rm', '--bundle', dir]);
    expect(r.code).toBe(125);
    expect(r.stderr).toMatch(/hook startContainer\[0\] \/bin\/sh: exit status 5/);
    expect(readFileSync(log, 'utf8')).toBe('');
    // through create/start, `start` waits for the command's execve and so reports it too
    expect(create(dir, 'hooks-sc')).toBe(0);
    const s = tsrun(['start', 'hooks-sc']);
    expect(s.code).toBe(125);
    expect(s.stderr).toMatch(/container hooks-sc failed after start, before its command \(a startContainer hook/);
    expect(readFileSync(log, 'utf8')).toBe('');
  });

  it('poststart failure stops the started container; poststop failure is a warning and the next one runs', () => {
    const { dir, log } = bundle({}, ['sleep', '30']);
    const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    cfg.hooks = {
      poststart: [{ path: '/bin/false' }],
      poststop: [{ path: '/bin/sh', args: ['sh', '-c', 'echo sad >&2; exit 6'] }, recorder('poststop', log)],
    };
    writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
    expect(create(dir, 'hooks-post')).toBe(0);
    const pid = JSON.parse(tsrun(['state', 'hooks-post']).stdout).pid as number;
    const s = tsrun(['start', 'hooks-post']);
    expect(s.code).toBe(125);
    expect(s.stderr).toMatch(/hook poststart\[0\] \/bin\/false: exit status 1/);
    for (let i = 0; i < 100 && JSON.parse(tsrun(['state', 'hooks-post']).stdout).status !== 'stopped'; i++) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
    expect(JSON.parse(tsrun(['state', 'hooks-post']).stdout)).toMatchObject({ status: 'stopped' });
    const d = tsrun(['delete', 'hooks-post']);
    expect(d.code).toBe(0);
    expect(d.stderr).toMatch(/warning: hook poststop\[0\] \/bin\/sh: exit status 6: sad/);
    expect(lines(log).map((l) => [l.kind, l.state.pid])).toEqual([['poststop', pid]]);
  });

  it('bad hooks are refused before anything is made, naming the field', () => {
    for (const [hooks, re] of [
      [{ prestart: [{ path: 'relative/hook' }] }, /hooks\.prestart\[0\]\.path: required: an absolute path/],
      [{ poststop: [{ path: '/bin/true', timeout: 0 }] }, /hooks\.poststop\[0\]\.timeout: must be (an integer number of seconds greater than zero|>= 1 \(got 0\))/], // the runtime-spec schema answers first,
      [{ createContainer: [{ path: '/bin/true', env: ['NOEQUALS'] }] }, /hooks\.createContainer\[0\]\.env: each entry must be KEY=value/],
      [{ preStart: [{ path: '/bin/true' }] }, /hooks\.preStart: unknown hook kind/],
    ] as const) {
      const { dir } = bundle(hooks as unknown as Record<string, Hook[]>);
      const r = tsrun(['create', '--bundle', dir, 'hooks-bad']);
      expect(r.code).toBe(125);
      expect(r.stderr).toMatch(re);
    }
    expect(leaks()).toEqual([]);
  });

  it('explain shows every hook as a plan step with its reason', () => {
    const { dir, log } = bundle({});
    const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    cfg.hooks = Object.fromEntries(['prestart', 'createRuntime', 'createContainer', 'startContainer', 'poststart', 'poststop'].map((k) => [k, [recorder(k, log)]]));
    writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
    const out = tsrun(['explain', '--bundle', dir]).stdout;
    const at = (s: string) => out.indexOf(s);
    for (const s of ['MSG_HOOKS', 'run hook prestart[0]', 'run hook createRuntime[0]', '[createContainer[0]', 'pivot_root(".", ".")', '[startContainer[0]', 'execve("true"', 'run hook poststart[0]', 'run hook poststop[0]']) expect(at(s), s).toBeGreaterThan(-1);
    const order = ['MSG_HOOKS', 'run hook prestart[0]', 'run hook createRuntime[0]', '[createContainer[0]', 'pivot_root(".", ".")', '[startContainer[0]', 'execve("true"', 'run hook poststart[0]', 'run hook poststop[0]'].map(at);
    expect(order).toEqual([...order].sort((a, b) => a - b));
    expect(out).toMatch(/hooks: OCI prestart \(deprecated, still what Docker uses/);
    expect(readFileSync(log, 'utf8')).toBe('');
  });
});
