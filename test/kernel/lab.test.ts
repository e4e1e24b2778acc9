import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { readRlimitHost } from '../../src/controls/rlimits.js';
import { BIN, ROOT, describeKernel, leaks, tsrunEnvVars } from './helpers.js';

// `tsrun lab N --json` for each of the workshop's eight labs (issue 13 item 2): the verdicts,
// and the kernel's facts of the two halves, which must differ where the control acts.
// Labs 5 and 8 use userns-remap "default": the account files are a private copy
// (TSRUN_ID_PREFIX), so no user is ever added to the host; the lab must remove the user it
// created from the copy as well.

interface Half {
  setting: string;
  commands: { display: string; code: number | null; stdout: string; stderr: string }[];
  facts: Record<string, string | number | boolean | null>;
}
interface LabResult {
  n: number;
  name: string;
  verdict: string;
  why: string;
  without: Half;
  with: Half;
  notes: string[];
}

let prefix = '';
let hostPasswd = '';
let labDirsBefore: string[] = [];
const labDirs = () => readdirSync(tmpdir()).filter((d) => d.startsWith('tsrun-lab-'));
const sha = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');

function lab(key: string, format: '--json' | '--tap' = '--json'): { code: number | null; stderr: string; stdout: string; results: LabResult[] } {
  const r = spawnSync(BIN, ['lab', key, format], { env: { ...tsrunEnvVars(), TSRUN_ID_PREFIX: prefix }, encoding: 'utf8', timeout: 80_000 });
  return { code: r.status, stderr: r.stderr, stdout: r.stdout, results: format === '--json' ? (JSON.parse(r.stdout) as LabResult[]) : [] };
}

function one(key: string): LabResult {
  const r = lab(key);
  expect(r.stderr).not.toMatch(/cleanup/);
  expect(r.results).toHaveLength(1);
  const res = r.results[0]!;
  // on failure, what went wrong is in the commands' output: show the failed ones
  if (res.verdict !== 'pass' && res.verdict !== 'unavailable')
    console.error([...res.without.commands, ...res.with.commands].filter((c) => c.code !== 0).map((c) => `$ ${c.display} [${c.code}]\n${c.stdout}${c.stderr}`).join('\n'));
  return res;
}

describeKernel('tsrun lab: the workshop, control off then on', () => {
  beforeAll(() => {
    hostPasswd = readFileSync('/etc/passwd', 'utf8');
    prefix = mkdtempSync(join(tmpdir(), 'tsrun-lab-ids-'));
    mkdirSync(join(prefix, 'etc'));
    for (const f of ['passwd', 'group', 'shadow', 'gshadow']) if (existsSync(`/etc/${f}`)) copyFileSync(`/etc/${f}`, join(prefix, 'etc', f));
    labDirsBefore = labDirs();
  });
  afterAll(() => {
    expect(readFileSync('/etc/passwd', 'utf8')).toBe(hostPasswd);
    // the remap user the labs created in the copy is gone again, with its ranges
    for (const f of ['passwd', 'group', 'shadow', 'gshadow']) expect(readFileSync(join(prefix, 'etc', f), 'utf8')).not.toMatch(/^tsrun:/m);
    for (const f of ['subuid', 'subgid']) if (existsSync(join(prefix, 'etc', f))) expect(readFileSync(join(prefix, 'etc', f), 'utf8')).not.toMatch(/^tsrun:/m);
    rmSync(prefix, { recursive: true, force: true });
    expect(labDirs().filter((d) => !labDirsBefore.includes(d) && !d.startsWith('tsrun-lab-ids-'))).toEqual([]);
    expect(leaks()).toEqual([]);
  });

  it('lists the eight labs', () => {
    const r = spawnSync(BIN, ['lab', 'list', '--json'], { env: tsrunEnvVars(), encoding: 'utf8' });
    expect((JSON.parse(r.stdout) as { n: number; name: string }[]).map((l) => `${l.n} ${l.name}`)).toEqual([
      '1 escape',
      '2 audit',
      '3 namespaces',
      '4 cgroups',
      '5 userns-remap',
      '6 live-restore',
      '7 mac',
      '8 everything',
    ]);
    const bad = spawnSync(BIN, ['lab', '9'], { env: tsrunEnvVars(), encoding: 'utf8' });
    expect(bad.status).toBe(125);
    expect(bad.stderr).toMatch(/^tsrun: tsrun lab "9": no such lab/);
  });

  it('lab 1: the attack rewrites the decoy a vulnerable launcher runs; it cannot rewrite tsrun-init', { timeout: 90_000 }, () => {
    const init = join(ROOT, 'build', 'tsrun-init');
    const before = sha(init);
    const r = one('1');
    const w = r.without.facts;
    const h = r.with.facts;
    expect(w.decoy_sha256_before).not.toBe(w.decoy_sha256_after);
    expect(w).toMatchObject({ decoy_changed: true, attack_caught_decoy: true, attack_open_exe: '0', attack_reopen_write: '0', attack_write: '0' });
    expect(w.decoy_now_says).toMatch(/written from inside a container/);
    expect(h).toMatchObject({ attack_caught_init: true, attack_open_exe: '0', overwritten: false, init_changed: false });
    expect(h.attack_exe_seen).toMatch(/^\/memfd:tsrun-init/);
    // the sealed memfd: no writable open (EPERM), or if opened, no write
    expect(h.attack_reopen_write === 'EPERM' || h.attack_write === 'EPERM').toBe(true);
    expect(sha(init)).toBe(before);
    expect(r.verdict).toBe('pass');
    // the commands a student types are shown, the decoy in a temporary directory
    expect(r.without.commands.map((c) => c.display).join('\n')).toMatch(/vulnerable-launcher \d+ \/tmp\/tsrun-lab-\w+\/l1-decoy-decoy\/decoy 1/);
  });

  it('lab 2 (needs the audit verb): fewer WARNs with the lab 8 configuration', () => {
    const r = one('2');
    expect(r.without.commands[0]!.display).toMatch(/^TSRUN_CONFIG=\S+ tsrun audit --host --json$/);
    expect(r.verdict).toBe('pass');
    expect(Number(r.with.facts.warnings)).toBeLessThan(Number(r.without.facts.warnings));
    expect(r.without.facts.exit).toBe(1);
    // the container checks (CIS 5): no_new_privs (5.25) and the user namespace (5.30) fixed by the configuration
    expect(String(r.without.facts.container_warned).split(' ')).toEqual(expect.arrayContaining(['5.25']));
    expect(String(r.with.facts.container_warned).split(' ')).not.toContain('5.25');
    expect(Number(r.with.facts.container_warnings)).toBeLessThan(Number(r.without.facts.container_warnings));
  });

  it('lab 3: PID 1 of its own namespace, one process visible; an ordinary process from outside', () => {
    const r = one('3');
    expect(r.with.facts).toMatchObject({ shell_pid: 1, processes_visible: 1 });
    expect(Number(r.without.facts.shell_pid)).toBeGreaterThan(1);
    expect(Number(r.without.facts.processes_visible)).toBeGreaterThan(1);
    expect(r.with.facts.seen_from_host).toMatch(/^\d+ root +sleep$/);
    expect(r.verdict).toBe('pass');
  });

  it('lab 4: cpuset, cpu shares, memory, a fork bomb in ash, default-ulimits nproc (root exempt)', { timeout: 90_000 }, () => {
    const r = one('4');
    const w = r.without.facts;
    const h = r.with.facts;
    expect(w.cpus_allowed).toBe('0-1');
    expect(h.cpus_allowed).toBe('0');
    expect(Number(h.cpu_ratio_b_to_a)).toBeGreaterThan(1.3);
    expect(Number(h.cpu_ratio_b_to_a)).toBeGreaterThan(Number(w.cpu_ratio_b_to_a));
    expect(w).toMatchObject({ memory_hog_bytes: 64 << 20, oom_killed: false, forks_of_150: '150 (0)', uid4242_forks_of_30: '30 (0)' });
    expect(h).toMatchObject({ oom_killed: true, forks_of_150: '99 (EAGAIN)', host_still_forks: true, uid4242_forks_of_30: '9 (EAGAIN)', root_forks_of_30: '30 (0)', root_exempt_warning: true });
    expect(h.fork_bomb).toMatch(/^held at (\d+) tasks$/);
    expect(Number(/(\d+)/.exec(String(h.fork_bomb))![1])).toBeLessThanOrEqual(100);
    expect(r.with.commands.map((c) => c.display).join('\n')).toContain("sh -c 'bomb() { bomb | bomb & }; bomb; exec sleep 30'");
    expect(r.verdict).toBe('pass');
  });

  it('lab 5: container root reads a root-only decoy without the remap, gets Permission denied with it', () => {
    const r = one('5');
    expect(r.without.facts).toMatchObject({ uid_map: '0 0 4294967295', read_secret: true });
    expect(r.with.facts).toMatchObject({ uid_map: '0 100000 65536', read_secret: false, error: 'Permission denied', subuid_line: 'tsrun:100000:65536' });
    expect(r.notes.join('\n')).toMatch(/the "tsrun" remap user did not exist: the run creates it .*the lab removes it afterwards/);
    expect(r.verdict).toBe('pass');
  });

  it('lab 6: the CLI killed, the container found again', () => {
    const r = one('6');
    expect(r.without.facts).toMatchObject({ started: true, cli_killed: 'SIGKILL', listed_after: true, exec_after: true });
    expect(r.without.facts.config_says).toMatch(/live-restore": false has no effect/);
    expect(r.with.facts).toMatchObject({ listed_after: true, exec_after: true });
    expect(r.with.facts.parent_after).toMatch(/^tsrun-monitor/);
    expect(r.verdict).toBe('pass');
  });

  it('lab 7: the MAC this kernel has (Landlock here): root with every capability cannot write /etc or run a dropped program under the ruleset', () => {
    const r = one('7');
    expect(String(r.without.facts.lsms).split(',')).toContain('landlock');
    expect(r.without.facts).toMatchObject({ etc_write: true, tmp_exec: true, read: true });
    expect(r.with.facts).toMatchObject({ etc_write: false, tmp_exec: false, read: true });
    expect(r.notes.join('\n')).toMatch(/SELinux is not active: .*container_t/);
    expect(r.verdict).toBe('pass');
  });

  it("lab 8: the workshop's daemon.json (nofile lowered, with a note naming the key), and the escape fails", { timeout: 90_000 }, () => {
    const r = one('8');
    const hard = readRlimitHost().limits.get(7)!.hard;
    expect(r.notes.join('\n')).toMatch(new RegExp(`default-ulimits\\.nofile: Hard 64000 lowered to ${hard}`));
    expect(r.without.facts).toMatchObject({ uid_map: '0 0 4294967295', NoNewPrivs: '0', decoy_changed: true, attack_open_exe: '0' });
    expect(r.with.facts).toMatchObject({ uid_map: '0 100000 65536', NoNewPrivs: '1', nofile: `${hard}/${hard}`, nproc: '100/200', decoy_changed: false, mqueue: true });
    expect(r.with.facts.attack_open_exe).toBe('EACCES');
    expect(r.verdict).toBe('pass');
  });

  it('--tap: one line per lab', () => {
    const r = lab('7', '--tap');
    expect(r.stdout).toMatch(/^TAP version 13\n1\.\.1\nok 1 - lab 7 mac: /);
    expect(r.code).toBe(0);
  });
});
