// The eight labs of the workshop's guide (/docs/workshop.md), each run twice on this kernel:
// without the control, then with it. Every fact compared is the kernel's answer (what a
// command printed, an errno, a hash), never what tsrun meant to do.
import { childProcess } from '../builtins.js';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readRlimitHost } from '../controls/rlimits.js';
import { DEFAULT_REMAP_USER, HOST_ID_DB, idDbUnder, type IdDb } from '../controls/userns.js';
import { detectHost, readLsms } from '../runtime/host.js';
import { attackBuilt, attackDecoy, attackInit } from './attack.js';
import { type Fact, type Half, type Lab, type LabContext, type LabResult, jsonLines, newHalf, quiet, sleep } from './context.js';

type Meta = Pick<Lab, 'n' | 'name' | 'title' | 'workshop' | 'cis'>;

function result(m: Meta, without: Half, withh: Half, verdict: LabResult['verdict'], why: string, notes: string[] = []): LabResult {
  return { n: m.n, name: m.name, title: m.title, workshop: m.workshop, cis: m.cis, without, with: withh, verdict, why, notes };
}

function writeConfig(ctx: LabContext, file: string, cfg: unknown): string {
  const p = join(ctx.tmp, file);
  writeFileSync(p, JSON.stringify(cfg, null, 2) + '\n');
  return p;
}

// ---- the remap user: created by the lab only when missing, and then removed again ----

function idDb(ctx: LabContext): IdDb {
  return ctx.env.TSRUN_ID_PREFIX ? idDbUnder(ctx.env.TSRUN_ID_PREFIX) : HOST_ID_DB;
}

function readOr(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/**
 * Before a lab that uses userns-remap "default": if the `tsrun` user is missing, the run
 * will create it (useradd + a line in subuid/subgid, as dockerd does for dockremap); the
 * lab then removes exactly that again. A user that existed before is left alone.
 */
function guardRemapUser(ctx: LabContext, notes: string[]): void {
  const db = idDb(ctx);
  const hasUser = (readOr(db.passwd) ?? '').split('\n').some((l) => l.startsWith(`${DEFAULT_REMAP_USER}:`));
  if (hasUser) return;
  const before = { subuid: readOr(db.subuid), subgid: readOr(db.subgid) };
  const hasGroup = () => (readOr(db.group) ?? '').split('\n').some((l) => l.startsWith(`${DEFAULT_REMAP_USER}:`));
  const groupBefore = hasGroup();
  notes.push(`the "${DEFAULT_REMAP_USER}" remap user did not exist: the run creates it (${db.passwd}, ${db.subuid}, ${db.subgid}); the lab removes it afterwards`);
  ctx.onCleanup(`remove the ${DEFAULT_REMAP_USER} user the lab created`, () => {
    const now = (readOr(db.passwd) ?? '').split('\n').some((l) => l.startsWith(`${DEFAULT_REMAP_USER}:`));
    if (now) {
      const args = [...(db.prefix ? ['--prefix', db.prefix] : []), DEFAULT_REMAP_USER];
      const r = childProcess().spawnSync('userdel', args, { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`userdel ${args.join(' ')}: ${(r.stderr ?? '').trim()}`);
    }
    // useradd made a group of the same name; userdel keeps it under --prefix
    if (!groupBefore && hasGroup()) {
      const args = [...(db.prefix ? ['--prefix', db.prefix] : []), DEFAULT_REMAP_USER];
      const r = childProcess().spawnSync('groupdel', args, { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`groupdel ${args.join(' ')}: ${(r.stderr ?? '').trim()}`);
    }
    // only the lines this run added: a range someone else wrote meanwhile stays
    for (const [path, old] of [[db.subuid, before.subuid], [db.subgid, before.subgid]] as const) {
      const cur = readOr(path);
      if (cur === undefined) continue;
      const keep = new Set((old ?? '').split('\n'));
      const lines = cur.split('\n').filter((l) => keep.has(l) || !l.startsWith(`${DEFAULT_REMAP_USER}:`));
      const text = lines.join('\n');
      if (text !== cur) writeFileSync(path, text);
    }
  });
}

// ---- lab 1 ----

const lab1: Lab = {
  n: 1,
  name: 'escape',
  title: 'CVE-2019-5736: overwrite the runtime through /proc/<pid>/exe',
  workshop: 'lab part 1 (escape), re-run in part 8',
  cis: 'none (a runtime flaw; CIS 1.2.x asks for an up-to-date runtime)',
  async run(ctx) {
    const without = newHalf('a vulnerable start-up: a toy launcher runs a decoy binary inside the container');
    const withh = newHalf('tsrun exec: tsrun-init, run from a sealed memfd, joins the container');
    const missing = attackBuilt();
    if (missing) return result(this, without, withh, 'unavailable', missing);
    without.facts = await attackDecoy(ctx, without, 'l1-decoy');
    withh.facts = await attackInit(ctx, withh, 'l1-init');
    const w = without.facts;
    const h = withh.facts;
    const notes = [
      'The attacker gets --cap-add SYS_PTRACE: tsrun-init is non-dumpable, so without that capability the kernel refuses even the O_PATH open (EACCES) and the memfd\'s own defence would not be visible.',
      'The decoy is a copy of /bin/sleep in a temporary directory; the launcher joins the container\'s PID namespace and bounding set and execs it, as runc 1.0-rc6 exec\'d itself.',
    ];
    if (!h.attack_caught_init) return result(this, without, withh, 'inconclusive', `the attacker never caught tsrun-init in ${String(h.execs)} execs (too fast on this machine); the decoy ${w.decoy_changed ? 'was' : 'was not'} overwritten`, notes);
    const ok = w.decoy_changed === true && h.init_changed === false && h.overwritten === false;
    return result(
      this,
      without,
      withh,
      ok ? 'pass' : 'fail',
      ok
        ? `without: the container rewrote the decoy (its next run would be the container's script as host root); with: it held tsrun-init's exe but the reopen for writing got ${String(h.attack_reopen_write)}${h.attack_write && h.attack_write !== '-' ? `, the write ${String(h.attack_write)}` : ''} — a sealed memfd, and ${'build/tsrun-init'} is unchanged`
        : `decoy changed: ${String(w.decoy_changed)}, tsrun-init overwritten: ${String(h.overwritten)}, build/tsrun-init changed: ${String(h.init_changed)}`,
      notes,
    );
  },
};

// ---- lab 2 ----

interface AuditRun {
  missing: boolean;
  code: number | null;
  warns: string[];
}

/** Every object in the report whose status/level/result is WARN, named by its id. */
function warnsOf(stdout: string): string[] {
  const out: string[] = [];
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === 'object') {
      const o = v as Record<string, unknown>;
      if (['status', 'level', 'result'].some((k) => String(o[k] ?? '').toUpperCase() === 'WARN')) out.push(String(o.id ?? o.check ?? o.title ?? '?'));
      else Object.values(o).forEach(walk);
    }
  };
  let parsed = false;
  try {
    walk(JSON.parse(stdout));
    parsed = true;
  } catch {
    for (const o of jsonLines(stdout)) walk(o), (parsed = true);
  }
  if (!parsed) for (const m of stdout.matchAll(/\bWARN\b\s*(\S+)?/g)) out.push(m[1] ?? '?');
  return out;
}

function audit(ctx: LabContext, half: Half, config: string, target: string[] = ['--host']): AuditRun {
  const r = ctx.tsrun(half, ['audit', ...target, '--json'], { env: { TSRUN_CONFIG: config } });
  const missing = r.code === 125 && /unknown command|unknown verb/i.test(r.stderr);
  return { missing, code: r.code, warns: missing ? [] : warnsOf(r.stdout) };
}

/** A container started under `config`, audited (the runtime checks, CIS section 5), removed. */
function auditContainer(ctx: LabContext, half: Half, config: string, base: string): AuditRun {
  const name = ctx.name(base);
  ctx.tsrun(half, ['run', '-d', '--name', name, 'busybox', 'sleep', '30'], { env: { TSRUN_CONFIG: config } });
  const a = audit(ctx, half, config, [name]);
  ctx.tsrun(half, ['rm', '-f', name]);
  return a;
}

export const LAB8_DAEMON_JSON = {
  'selinux-enabled': true,
  'live-restore': true,
  'no-new-privileges': true,
  'userns-remap': 'default',
  'default-ulimits': {
    nofile: { Name: 'nofile', Hard: 64000, Soft: 64000 },
    nproc: { Name: 'nproc', Soft: 100, Hard: 200 },
  },
};

/**
 * The lab's daemon.json as tsrun's config file. A hard limit above tsrun's own cannot be
 * set without CAP_SYS_RESOURCE (setrlimit EPERM): it is lowered, with a note naming the key.
 */
export function lab8Config(): { config: typeof LAB8_DAEMON_JSON; notes: string[] } {
  const config = JSON.parse(JSON.stringify(LAB8_DAEMON_JSON)) as typeof LAB8_DAEMON_JSON;
  const notes: string[] = [];
  const canRaise = ((detectHost().capEff >> 24n) & 1n) === 1n;
  const host = readRlimitHost();
  for (const [name, res] of [['nofile', 7], ['nproc', 6]] as const) {
    const u = config['default-ulimits'][name];
    const hard = host.limits.get(res)?.hard;
    const ceiling = name === 'nofile' && host.nrOpen < (hard ?? host.nrOpen) ? host.nrOpen : hard;
    if (ceiling === undefined || canRaise || BigInt(u.Hard) <= ceiling) continue;
    const to = Number(ceiling);
    notes.push(`default-ulimits.${name}: Hard ${u.Hard} lowered to ${to}${u.Soft > to ? ` (Soft too)` : ''}: tsrun's own hard limit is ${to} and root here lacks CAP_SYS_RESOURCE, so setrlimit would fail with EPERM`);
    u.Hard = to;
    u.Soft = Math.min(u.Soft, to);
  }
  return { config, notes };
}

const lab2: Lab = {
  n: 2,
  name: 'audit',
  title: 'docker-bench-security: audit the default installation, then the hardened one',
  workshop: 'lab part 2 (docker-bench-security)',
  cis: 'CIS Docker Benchmark v1.2.0, sections 2 (daemon) and 5 (runtime)',
  async run(ctx) {
    const without = newHalf('default configuration (an empty config file)');
    const withh = newHalf("the lab 8 configuration (the workshop's daemon.json)");
    const empty = writeConfig(ctx, 'default.json', {});
    const { config, notes } = lab8Config();
    const hardened = writeConfig(ctx, 'lab8.json', config);
    const a = audit(ctx, without, empty);
    if (a.missing)
      return result(this, without, withh, 'unavailable', 'this tsrun has no `audit` verb yet: `tsrun audit --host --json` answered "unknown command"', [
        'tsrun audit [--host] [--json] [CONTAINER...|--pid PID] checks the host and containers against the CIS benchmark and exits 1 on any WARN.',
      ]);
    const b = audit(ctx, withh, hardened);
    guardRemapUser(ctx, notes); // the hardened container below uses userns-remap "default"
    const ca = auditContainer(ctx, without, empty, 'l2-off');
    const cb = auditContainer(ctx, withh, hardened, 'l2-on');
    without.facts = { exit: a.code, warnings: a.warns.length, warned: a.warns.join(' '), container_warnings: ca.warns.length, container_warned: ca.warns.join(' ') };
    withh.facts = { exit: b.code, warnings: b.warns.length, warned: b.warns.join(' '), container_warnings: cb.warns.length, container_warned: cb.warns.join(' ') };
    const fixed = a.warns.filter((w) => !b.warns.includes(w));
    const ok = b.warns.length < a.warns.length;
    return result(this, without, withh, ok ? 'pass' : 'fail', ok ? `${fixed.length} warning(s) fixed by the configuration: ${fixed.join(', ')}` : `the hardened configuration did not reduce the warnings (${a.warns.length} → ${b.warns.length})`, notes);
  },
};

// ---- lab 3 ----

const lab3: Lab = {
  n: 3,
  name: 'namespaces',
  title: 'Namespaces: a container is a process that sees only its own',
  workshop: 'lab part 3 (unshare --fork --pid --mount-proc)',
  cis: 'CIS 5.15 (do not share the host\'s PID namespace)',
  async run(ctx) {
    const without = newHalf("the host's namespaces (what a process sees without a PID namespace)");
    const withh = newHalf('tsrun run: new PID, mount, UTS, IPC, network and cgroup namespaces');
    // counted by the shell itself (a glob, no child process), so only what it sees is counted
    const script = 'echo "pid $$"; set -- /proc/[0-9]*; echo "$# processes"';
    const h = ctx.sh(without, ['/bin/sh', '-c', script]);
    const c = ctx.tsrun(withh, ['run', '--rm', 'busybox', 'sh', '-c', script]);
    const parse = (s: string) => ({ pid: Number(/pid (\d+)/.exec(s)?.[1] ?? NaN), procs: Number(/(\d+) processes/.exec(s)?.[1] ?? NaN) });
    const hp = parse(h.stdout);
    const cp = parse(c.stdout);
    ctx.tsrun(withh, ['run', '--rm', 'busybox', 'sh', '-c', 'ps; exit 0']); // as the workshop's unshare: the shell is PID 1, ps its child
    // seen from outside it is an ordinary process
    const name = ctx.name('l3');
    ctx.tsrun(withh, ['run', '-d', '--name', name, 'busybox', 'sleep', '30']);
    const pid = ctx.initPid(withh, name);
    let outside = '';
    if (pid) outside = ctx.sh(withh, ['ps', '-o', 'pid,user,comm', '-p', String(pid)]).stdout.trim().split('\n').at(-1)?.trim() ?? '';
    ctx.tsrun(withh, ['rm', '-f', name]);
    without.facts = { shell_pid: hp.pid, processes_visible: hp.procs, pid_ns: readlinkSafe('/proc/self/ns/pid') };
    withh.facts = { shell_pid: cp.pid, processes_visible: cp.procs, seen_from_host: outside };
    const ok = cp.pid === 1 && cp.procs === 1 && hp.procs > cp.procs;
    return result(this, without, withh, ok ? 'pass' : 'fail', ok ? `inside, the shell is PID 1 and sees ${cp.procs} process (itself; ps adds itself); on the host ${hp.procs}. From outside, the container's PID 1 is host pid ${pid ?? '?'}, an ordinary process` : 'the container saw more than its own processes');
  },
};

function readlinkSafe(p: string): string {
  try {
    return childProcess().spawnSync('readlink', [p], { encoding: 'utf8' }).stdout.trim();
  } catch {
    return '';
  }
}

// ---- lab 4 ----

async function cpuShares(ctx: LabContext, half: Half, shares: [string[], string[]]): Promise<number[]> {
  const names = [ctx.name(`l4-a${half.setting.length}`), ctx.name(`l4-b${half.setting.length}`)];
  names.forEach((n, i) => ctx.tsrun(half, ['run', '-d', '--name', n, '--cpuset-cpus', '0', ...shares[i]!, 'busybox', 'sh', '-c', 'while :; do :; done']));
  // CPU time over the same window once both run (the first started alone for a moment)
  const read = () => names.map((n) => Number(ctx.tsrun(half, ['exec', n, 'cat', '/sys/fs/cgroup/cpuacct/cpuacct.usage']).stdout.trim()) / 1e9);
  await sleep(300);
  const t0 = read();
  await sleep(2000);
  const t1 = read();
  ctx.tsrun(half, ['rm', '-f', ...names]);
  return t1.map((u, i) => Math.round((u - t0[i]!) * 100) / 100);
}

const lab4: Lab = {
  n: 4,
  name: 'cgroups',
  title: 'Cgroups and ulimits: CPU, memory, a fork bomb, nproc',
  workshop: 'lab part 4 (cgroups, --pids-limit, default-ulimits)',
  cis: 'CIS 5.10 (memory), 5.11 (CPU shares), 5.28 (pids limit), 2.7 (default ulimits)',
  async run(ctx) {
    const without = newHalf('no limits');
    const withh = newHalf('--cpuset-cpus 0, --cpu-shares 512, -m 32m, --pids-limit 100, default-ulimits nproc 10/20');
    const notes: string[] = [];
    const cpus = (h: Half, f: string[]) => /Cpus_allowed_list:\s*(\S+)/.exec(ctx.tsrun(h, ['run', '--rm', ...f, 'busybox', 'grep', 'Cpus_allowed_list', '/proc/self/status']).stdout)?.[1] ?? '?';
    without.facts.cpus_allowed = cpus(without, []);
    withh.facts.cpus_allowed = cpus(withh, ['--cpuset-cpus', '0']);

    // two busy containers on CPU 0: equal weights, then 512 against 1024
    const [a0, b0] = await cpuShares(ctx, without, [[], []]);
    const [a1, b1] = await cpuShares(ctx, withh, [['--cpu-shares', '512'], []]);
    without.facts.cpu_seconds_a_b = `${a0} / ${b0} (2 s)`;
    withh.facts.cpu_seconds_a_b = `${a1} (512) / ${b1} (1024) (2 s)`;
    const ratio0 = b0! / Math.max(a0!, 0.01);
    const ratio1 = b1! / Math.max(a1!, 0.01);
    without.facts.cpu_ratio_b_to_a = Math.round(ratio0 * 100) / 100;
    withh.facts.cpu_ratio_b_to_a = Math.round(ratio1 * 100) / 100;

    // memory: 64 MiB through a pipe into tail, which keeps the whole "line"
    const hog = ['busybox', 'sh', '-c', 'head -c 64m /dev/zero | tail | wc -c'];
    const m0 = ctx.tsrun(without, ['run', '--rm', ...hog]);
    const m1 = ctx.tsrun(withh, ['run', '--rm', '-m', '32m', ...hog]);
    without.facts.memory_hog_bytes = Number(m0.stdout.trim());
    withh.facts.memory_hog_bytes = Number(m1.stdout.trim());
    withh.facts.oom_killed = /OOM-killed/.test(m1.stderr);
    without.facts.oom_killed = /OOM-killed/.test(m0.stderr);

    // pids: 150 sleepers, then the fork bomb (only with the limit: without it takes the host)
    const forks = (h: Half, f: string[]) => jsonLines(ctx.tsrun(h, ['run', '--rm', ...f, 'probe', '/probe', 'fork', '150', '1']).stdout).find((o) => o.op === 'fork') ?? {};
    const f0 = forks(without, []);
    const f1 = forks(withh, ['--pids-limit', '100']);
    without.facts.forks_of_150 = `${String(f0.ok)} (${String(f0.errno)})`;
    withh.facts.forks_of_150 = `${String(f1.ok)} (${String(f1.errno)})`;
    ctx.note(without, '# the fork bomb is not run without a limit: it would take the whole host');
    without.facts.fork_bomb = 'not run (no limit)';
    const bomb = ctx.name('l4-bomb');
    // ash refuses the classic `:(){ :|:& };:` ("bad function name"): the same bomb, named
    ctx.tsrun(withh, ['run', '-d', '--name', bomb, '--pids-limit', '100', 'busybox', 'sh', '-c', 'bomb() { bomb | bomb & }; bomb; exec sleep 30']);
    await sleep(1500);
    const st = jsonLines(ctx.tsrun(withh, ['stats', '--no-stream', '--format', 'json', bomb]).stdout)[0];
    const alive = ctx.tsrun(withh, ['run', '--rm', 'busybox', 'echo', 'the host still starts containers']);
    ctx.tsrun(withh, ['rm', '-f', bomb]);
    withh.facts.fork_bomb = `held at ${String(st?.PIDs ?? '?')} tasks`;
    withh.facts.host_still_forks = alive.code === 0;

    // default-ulimits nproc: counts the processes of the real uid; uid 0 is exempt
    const cfg = writeConfig(ctx, 'nproc.json', { 'default-ulimits': { nproc: { Name: 'nproc', Soft: 10, Hard: 20 } } });
    const nproc = (h: Half, f: string[], env: Record<string, string> = {}) => {
      const r = ctx.tsrun(h, ['run', '--rm', ...f, 'probe', '/probe', 'fork', '30', '1'], { env });
      const o = jsonLines(r.stdout).find((x) => x.op === 'fork') ?? {};
      return { text: `${String(o.ok)} (${String(o.errno)})`, ok: Number(o.ok), warned: /exempt/.test(r.stderr) };
    };
    const u0 = nproc(without, ['-u', '4242']);
    const u1 = nproc(withh, ['-u', '4242'], { TSRUN_CONFIG: cfg });
    const r1 = nproc(withh, [], { TSRUN_CONFIG: cfg });
    without.facts.uid4242_forks_of_30 = u0.text;
    withh.facts.uid4242_forks_of_30 = u1.text;
    withh.facts.root_forks_of_30 = r1.text;
    withh.facts.root_exempt_warning = r1.warned;
    notes.push(
      'RLIMIT_NPROC counts the processes of the real uid on the whole host (per user namespace) and fork(2) skips the check for uid 0 of the initial user namespace (and CAP_SYS_RESOURCE/CAP_SYS_ADMIN): a root container is exempt, so it protects only a non-root user or a remapped root (lab 5).',
      'busybox ash refuses the classic `:(){ :|:& };:` with "bad function name"; `bomb() { bomb | bomb & }; bomb` is the same bomb.',
      '--cpu-shares weighs containers only when they compete for the same CPU, hence both on CPU 0.',
    );
    const ok =
      withh.facts.cpus_allowed === '0' &&
      without.facts.cpus_allowed !== '0' &&
      ratio1 > 1.3 &&
      ratio1 > ratio0 &&
      withh.facts.oom_killed === true &&
      (without.facts.memory_hog_bytes as number) === 64 << 20 &&
      Number(f0.ok) === 150 &&
      Number(f1.ok) < 100 &&
      Number(st?.raw?.pids ?? st?.PIDs) <= 100 &&
      alive.code === 0 &&
      u0.ok === 30 &&
      u1.ok < 10 &&
      r1.ok === 30;
    return result(this, without, withh, ok ? 'pass' : 'fail', ok ? `cpuset ${String(withh.facts.cpus_allowed)}; CPU 1:${withh.facts.cpu_ratio_b_to_a} with 512 vs 1024 shares; the 64 MiB hog OOM-killed at 32 MiB; the bomb held at ≤100 tasks; uid 4242 stopped at ${u1.ok} forks, root exempt` : 'at least one limit did not hold (see the facts)', notes);
  },
};

// ---- lab 5 ----

const lab5: Lab = {
  n: 5,
  name: 'userns-remap',
  title: "User-namespace remap: the container's root is not the host's",
  workshop: 'lab part 5 (userns-remap=default)',
  cis: 'CIS 2.8 (enable user namespace support)',
  async run(ctx) {
    const without = newHalf('container root = host root');
    const withh = newHalf('--userns-remap default');
    const notes: string[] = [];
    const secret = join(ctx.tmp, 'shadow-decoy');
    writeFileSync(secret, 'decoy-secret: a root-only file made by tsrun lab 5\n', { mode: 0o600 });
    chmodSync(secret, 0o600);
    ctx.note(without, `install -m 600 /dev/null ${secret}; echo decoy-secret... > ${secret}   # a decoy, not /etc/shadow`);
    guardRemapUser(ctx, notes);
    const cmd = ['busybox', 'sh', '-c', 'cat /proc/self/uid_map; cat /tmp/shadow'];
    const a = ctx.tsrun(without, ['run', '--rm', '-v', `${secret}:/tmp/shadow`, ...cmd]);
    const b = ctx.tsrun(withh, ['run', '--rm', '--userns-remap', 'default', '-v', `${secret}:/tmp/shadow`, ...cmd]);
    const fact = (r: typeof a) => ({
      uid_map: r.stdout.split('\n')[0]?.trim().replace(/\s+/g, ' ') ?? '',
      read_secret: r.stdout.includes('decoy-secret'),
      // busybox cat's own message: the kernel refused the open inside the container
      error: /cat: can't open '\/tmp\/shadow': Permission denied/.test(r.stderr) ? 'Permission denied' : r.code === 0 ? '' : r.stderr.trim().split('\n').at(-1) ?? '',
    });
    without.facts = fact(a);
    withh.facts = fact(b);
    const created = /created (the )?user/.test(b.stderr);
    if (created) withh.facts.created_remap_user = true;
    const db = idDb(ctx);
    const sub = (readOr(db.subuid) ?? '').split('\n').find((l) => l.startsWith(`${DEFAULT_REMAP_USER}:`));
    withh.facts.subuid_line = sub ?? null;
    const ok =
      without.facts.read_secret === true &&
      String(without.facts.uid_map).startsWith('0 0 ') &&
      withh.facts.read_secret === false &&
      withh.facts.error === 'Permission denied' &&
      /^0 [1-9]\d* \d+$/.test(String(withh.facts.uid_map));
    return result(this, without, withh, ok ? 'pass' : 'fail', ok ? `without the remap container root read the root-only file; with it, root is host uid ${String(withh.facts.uid_map).split(' ')[1]} and gets Permission denied` : 'the remap did not change what container root could read', notes);
  },
};

// ---- lab 6 ----

const lab6: Lab = {
  n: 6,
  name: 'live-restore',
  title: 'Availability: the CLI dies, the container runs on',
  workshop: 'lab part 6 (live-restore)',
  cis: 'CIS 2.13 (enable live restore)',
  async run(ctx) {
    const without = newHalf('"live-restore": false, a foreground run whose tsrun is killed');
    const withh = newHalf('"live-restore": true, a detached run held by tsrun-monitor');
    const off = writeConfig(ctx, 'live-off.json', { 'live-restore': false });
    const on = writeConfig(ctx, 'live-on.json', { 'live-restore': true });
    const check = async (h: Half, name: string) => {
      const end = Date.now() + 8000;
      let running = false;
      const q = quiet();
      // running, not only listed: `ps` lists a container still being created too, and a CLI
      // killed then takes its half-made container with it (the lab failed so under load)
      while (!running && Date.now() < end) {
        running = ctx.tsrun(q, ['ps', '--filter', 'status=running', '--format', '{{.Names}}']).stdout.split('\n').includes(name);
        if (!running) await sleep(100);
      }
      return running;
    };
    const fg = ctx.name('l6-fg');
    const p = ctx.spawnTsrun(without, ['run', '--name', fg, 'busybox', 'sleep', '60'], { TSRUN_CONFIG: off });
    const started = await check(without, fg);
    ctx.note(without, `kill -9 ${p.proc.pid}        # the tsrun CLI that started it`);
    p.proc.kill('SIGKILL');
    await p.exited;
    const ps0 = ctx.tsrun(without, ['ps']);
    const ex0 = ctx.tsrun(without, ['exec', fg, 'echo', 'still here']);
    const pid0 = ctx.initPid(without, fg);
    without.facts = {
      started,
      cli_killed: p.rec.signal ?? String(p.rec.code),
      listed_after: ps0.stdout.includes(fg),
      exec_after: ex0.stdout.trim() === 'still here',
      parent_after: pid0 ? parentComm(pid0) : null,
      config_says: (p.rec.stderr.match(/live-restore[^\n]*/)?.[0] ?? '').slice(0, 120),
    };
    ctx.tsrun(without, ['rm', '-f', fg]);

    const bg = ctx.name('l6-bg');
    ctx.tsrun(withh, ['run', '-d', '--name', bg, 'busybox', 'sleep', '60'], { env: { TSRUN_CONFIG: on } });
    const ps1 = ctx.tsrun(withh, ['ps']);
    const ex1 = ctx.tsrun(withh, ['exec', bg, 'echo', 'still here']);
    const pid1 = ctx.initPid(withh, bg);
    withh.facts = {
      started: ps1.stdout.includes(bg),
      cli_killed: 'exited (run -d returns at once)',
      listed_after: ps1.stdout.includes(bg),
      exec_after: ex1.stdout.trim() === 'still here',
      parent_after: pid1 ? parentComm(pid1) : null,
      config_says: '',
    };
    ctx.tsrun(withh, ['rm', '-f', bg]);
    const ok = without.facts.listed_after === true && without.facts.exec_after === true && withh.facts.exec_after === true;
    return result(
      this,
      without,
      withh,
      ok ? 'pass' : 'fail',
      ok ? 'tsrun has no daemon: a container outlives the CLI either way (docker needs live-restore for this); tsrun ps and exec find it again from its state and the kernel' : 'the container did not survive its CLI',
      ['The "without" of the workshop (dockerd stopping its containers) cannot happen here: there is no daemon; "live-restore": false is accepted and does nothing, and says so.'],
    );
  },
};

function parentComm(pid: number): string {
  try {
    const ppid = /^PPid:\s*(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return ppid ? `${readFileSync(`/proc/${ppid}/comm`, 'utf8').trim()} (pid ${ppid})` : '?';
  } catch {
    return '?';
  }
}

// ---- lab 7 ----

const lab7: Lab = {
  n: 7,
  name: 'mac',
  title: 'Mandatory access control (SELinux in the workshop; here, what the kernel has)',
  workshop: 'lab part 7 (SELinux: container_t, :z and :Z)',
  cis: 'CIS 5.2 (SELinux security options), 5.1 (AppArmor profile)',
  async run(ctx) {
    // The workshop's SELinux half needs an enforcing kernel (tsrun's own suite shows it in a
    // QEMU guest: docs/mac.md). This lab uses whichever MAC the kernel has: Landlock where it
    // is active — an unprivileged, per-process ruleset that even root with every capability
    // cannot step out of, as a container_t process cannot write an etc_t file.
    const without = newHalf('DAC only: file modes and capabilities decide');
    const withh = newHalf('--security-opt landlock=builtin (read everything; write only /dev, /run, /tmp, /var/tmp; run programs only from /bin, /sbin, /usr, /lib*)');
    const { lsms, source } = readLsms();
    const script = 'echo changed >> /etc/motd && echo etc-write-ok; cp /bin/busybox /tmp/true && /tmp/true && echo tmp-exec-ok; cat /etc/passwd >/dev/null && echo read-ok';
    const a = ctx.tsrun(without, ['run', '--rm', '--cap-add', 'ALL', 'busybox', 'sh', '-c', script]);
    without.facts = { lsms: lsms.join(','), lsm_source: source, etc_write: a.stdout.includes('etc-write-ok'), tmp_exec: a.stdout.includes('tmp-exec-ok'), read: a.stdout.includes('read-ok') };
    const landlock = lsms.includes('landlock');
    const notes = [
      `Active LSMs (${source}): ${lsms.join(', ') || 'none listed'}.`,
      lsms.includes('selinux') ? 'SELinux is active: tsrun labels containers container_t with an MCS pair; try --security-opt label=level:s0:c1,c2 and -v DIR:/data:Z (docs/mac.md).' : 'SELinux is not active: with it enforcing, the container would run as system_u:system_r:container_t:s0:cX,cY (ps Z), read but not write a file labelled etc_t, be refused a file under /home, and :z/:Z would relabel the volume (shared / private MCS pair). tsrun does this in its QEMU guest test (docs/mac.md).',
      lsms.includes('apparmor') ? 'AppArmor is active: tsrun applies its tsrun-default profile (docs/mac.md).' : 'AppArmor is not active.',
    ];
    if (!landlock) {
      withh.facts = {};
      return result(this, without, withh, 'unavailable', `no mandatory access control tsrun can apply on this kernel (LSMs: ${lsms.join(', ') || 'none listed'})`, notes);
    }
    // Landlock needs no_new_privs (or CAP_SYS_ADMIN) to restrict itself: landlock_restrict_self(2)
    const b = ctx.tsrun(withh, ['run', '--rm', '--cap-add', 'ALL', '--security-opt', 'no-new-privileges', '--security-opt', 'landlock=builtin', 'busybox', 'sh', '-c', script]);
    withh.facts = { etc_write: b.stdout.includes('etc-write-ok'), tmp_exec: b.stdout.includes('tmp-exec-ok'), read: b.stdout.includes('read-ok'), errors: b.stderr.split('\n').filter((l) => /denied|Permission/.test(l)).length };
    notes.push('Landlock is active: the same root with every capability cannot write /etc or run a program it dropped in /tmp once the ruleset is on (landlock_restrict_self, inherited by every child, never lifted).');
    const ok = without.facts.etc_write === true && without.facts.tmp_exec === true && withh.facts.etc_write === false && withh.facts.tmp_exec === false && withh.facts.read === true;
    return result(this, without, withh, ok ? 'pass' : 'fail', ok ? 'with the Landlock ruleset, root with every capability can read but not write /etc nor run a dropped program; without it, both work' : 'the ruleset did not change what the container could do', notes);
  },
};

// ---- lab 8 ----

const lab8: Lab = {
  n: 8,
  name: 'everything',
  title: "Everything on: the workshop's daemon.json, then the escape again",
  workshop: 'lab part 8 (daemon.json with every control)',
  cis: 'CIS 2.8 (userns), 2.13 (live-restore), 2.17 (no-new-privileges), 2.7 (default ulimits)',
  async run(ctx) {
    const without = newHalf('default configuration (an empty config file)');
    const withh = newHalf("the workshop's daemon.json as tsrun's config file");
    const notes: string[] = [];
    const missing = attackBuilt();
    const empty = writeConfig(ctx, 'default.json', {});
    const { config, notes: lowered } = lab8Config();
    const cfg = writeConfig(ctx, 'config.json', config);
    ctx.note(withh, `cat daemon.json   # the workshop's`, JSON.stringify(LAB8_DAEMON_JSON, null, 2) + '\n');
    for (const l of lowered) ctx.note(withh, `# note: ${l}`);
    ctx.note(withh, `cat ${cfg}`, readFileSync(cfg, 'utf8'));
    notes.push(...lowered);
    guardRemapUser(ctx, notes);
    const info = (h: Half, env: Record<string, string>) => {
      const r = ctx.tsrun(h, ['run', '--rm', 'probe', '/probe', 'info'], { env });
      const o = jsonLines(r.stdout).find((x) => x.op === 'info') ?? {};
      return {
        uid_map: String(o.uid_map ?? '').trim().replace(/\s+/g, ' '),
        NoNewPrivs: o.NoNewPrivs ?? null,
        nofile: Array.isArray(o.nofile) ? o.nofile.join('/') : null,
        nproc: Array.isArray(o.nproc) ? o.nproc.join('/') : null,
        warnings: r.stderr.split('\n').filter((l) => l.includes('warning')).length,
        mqueue: Array.isArray(o.mounts) ? o.mounts.some((m: { path?: string; type?: string }) => m.path === '/dev/mqueue' && m.type === 'mqueue') : null,
      } as Record<string, Fact>;
    };
    without.facts = info(without, { TSRUN_CONFIG: empty });
    withh.facts = info(withh, { TSRUN_CONFIG: cfg });
    if (missing) return result(this, without, withh, 'unavailable', missing, notes);
    const a = await attackDecoy(ctx, without, 'l8-off', { TSRUN_CONFIG: empty });
    const b = await attackDecoy(ctx, withh, 'l8-on', { TSRUN_CONFIG: cfg });
    Object.assign(without.facts, { decoy_changed: a.decoy_changed, attack_open_exe: a.attack_open_exe });
    Object.assign(withh.facts, { decoy_changed: b.decoy_changed, attack_open_exe: b.attack_open_exe });
    notes.push(
      'With userns-remap the attacker is host uid 100000+ in its own user namespace: the decoy runs as host root, and opening its /proc/<pid>/exe needs CAP_SYS_PTRACE over the host\'s user namespace, which no capability inside can give.',
      'The workshop\'s note that mounting /dev/mqueue failed with EPERM under userns-remap plus SELinux: here (no SELinux) the probe finds an mqueue mounted at /dev/mqueue in both halves (fact "mqueue").',
    );
    const ok = a.decoy_changed === true && b.decoy_changed === false && withh.facts.NoNewPrivs === '1' && !String(withh.facts.uid_map).startsWith('0 0 ');
    return result(this, without, withh, ok ? 'pass' : 'fail', ok ? `with every control on, the escape of lab 1 fails (the exe could not be opened: ${String(b.attack_open_exe ?? 'not caught')}); no_new_privs 1, root mapped to ${String(withh.facts.uid_map)}, limits ${String(withh.facts.nofile)} / ${String(withh.facts.nproc)}` : 'the configuration did not stop the escape or did not apply', notes);
  },
};

export const LABS: readonly Lab[] = [lab1, lab2, lab3, lab4, lab5, lab6, lab7, lab8];

export function findLab(key: string): Lab | undefined {
  return LABS.find((l) => String(l.n) === key || l.name === key);
}

