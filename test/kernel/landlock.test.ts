// Landlock (--security-opt landlock=...), with and without, as the real kernel enforces it.
// The probe reports the errno the kernel gave; nothing here touches a host file: the writes
// aim at the container's own overlay (its /etc is a copy-up of the image).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeKernel, leaks, probe, testEnv, tsrun } from './helpers.js';

/** The Landlock ABI of this kernel, as the probe (run on the host) gets it from landlock_create_ruleset. */
const landlockAbi = (): number => JSON.parse(execFileSync(testEnv().probe, ['landlock'], { encoding: 'utf8' })).abi;

describeKernel('Landlock on the real kernel', () => {
  let dir: string;
  let rules: string;
  const NNP = ['--security-opt', 'no-new-privileges'];
  beforeAll(() => {
    expect(landlockAbi()).toBeGreaterThanOrEqual(3); // design.md: this host's kernel (6.18) has it active
    dir = mkdtempSync(join(tmpdir(), 'tsrun-landlock-'));
    rules = join(dir, 'rules.json');
    writeFileSync(rules, JSON.stringify({ read: ['/'], write: ['/tmp'], execute: ['/probe'] }));
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
    expect(leaks()).toEqual([]);
  });

  it('a write outside the write rules fails with EACCES; inside them it works; without landlock both work', () => {
    const ll = ['--security-opt', `landlock=${rules}`, ...NNP];
    const denied = probe(ll, ['write', '/etc/canary']);
    expect(denied.result.stderr).toBe('');
    expect(denied.lines).toEqual([expect.objectContaining({ op: 'write', errno: 'EACCES' })]);
    const allowed = probe(ll, ['write', '/tmp/canary']);
    expect(allowed.lines).toEqual([expect.objectContaining({ op: 'write', errno: '0' })]);
    // without the option, the same container root may write /etc (its own overlay copy)
    const without = probe(NNP, ['write', '/etc/canary']);
    expect(without.lines).toEqual([expect.objectContaining({ op: 'write', errno: '0' })]);
  });

  it('reading is allowed where the rules say so, and every capability does not override it', () => {
    writeFileSync(join(dir, 'noread.json'), JSON.stringify({ read: ['/tmp'], execute: ['/probe'] }));
    const ll = ['--security-opt', `landlock=${join(dir, 'noread.json')}`, ...NNP, '--cap-add', 'ALL'];
    const denied = probe(ll, ['read', '/etc/passwd']);
    // ALL less what this host's root lacks (CAP_SYS_RESOURCE here), said on stderr
    expect(denied.result.stderr).toMatch(/^(tsrun: warning: every capability asked for, but [^\n]*\n)?$/);
    expect(denied.lines).toEqual([expect.objectContaining({ errno: 'EACCES' })]);
    expect(probe(NNP, ['read', '/etc/passwd']).lines).toEqual([expect.objectContaining({ errno: '0' })]);
  });

  it('builtin: a program copied to /tmp cannot be executed and /etc cannot be written; without it, both work', () => {
    const script = 'cp /bin/busybox /tmp/true && /tmp/true; echo exec=$?; echo x > /etc/canary; echo write=$?';
    const on = tsrun(['run', '--rm', ...NNP, '--security-opt', 'landlock=builtin', 'busybox', 'sh', '-c', script]);
    expect(on.code).toBe(0);
    expect(on.stdout).toContain('exec=126');
    expect(on.stdout).toContain('write=1');
    expect(on.stderr).toMatch(/Permission denied/);
    const off = tsrun(['run', '--rm', ...NNP, 'busybox', 'sh', '-c', script]);
    expect(off.stdout).toContain('exec=0');
    expect(off.stdout).toContain('write=0');
  });

  it('an exec into the container is confined by the same rules', () => {
    const name = `landlock-exec-${process.pid}`;
    const r = tsrun(['run', '-d', '--name', name, ...NNP, '--security-opt', `landlock=${rules}`, 'probe', '/probe', 'sleep', '60']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    try {
      const x = tsrun(['exec', name, '/probe', 'write', '/etc/canary']);
      expect(x.stdout).toContain('"errno":"EACCES"');
      const y = tsrun(['exec', name, '/probe', 'write', '/tmp/canary']);
      expect(y.stdout).toContain('"errno":"0"');
    } finally {
      tsrun(['rm', '-f', name]);
    }
  });

  it('without no_new_privs (and without CAP_SYS_ADMIN) it is refused before anything starts', () => {
    const r = tsrun(['run', '--rm', '--security-opt', `landlock=${rules}`, 'probe', '/probe', 'info']);
    expect(r.code).toBe(125);
    expect(r.stderr).toMatch(/landlock_restrict_self\(2\) needs no_new_privs or CAP_SYS_ADMIN/);
    expect(r.stdout).toBe('');
  });

  it('a path the image lacks is an error naming ENOENT, and nothing is left behind', () => {
    writeFileSync(join(dir, 'missing.json'), JSON.stringify({ read: ['/'], write: ['/nonexistent-dir'], execute: ['/probe'] }));
    const r = tsrun(['run', '--rm', ...NNP, '--security-opt', `landlock=${join(dir, 'missing.json')}`, 'probe', '/probe', 'info']);
    expect(r.code).toBe(125);
    expect(r.stderr).toMatch(/\/nonexistent-dir/);
    expect(r.stderr).toMatch(/ENOENT/);
    expect(leaks()).toEqual([]);
  });

  it('explain shows the ruleset, after no_new_privs and before seccomp', () => {
    const r = tsrun(['explain', ...NNP, '--security-opt', `landlock=${rules}`, 'probe', '/probe', 'info']);
    expect(r.code).toBe(0);
    const out = r.stdout;
    const at = (s: string) => out.indexOf(s);
    expect(at('landlock_create_ruleset')).toBeGreaterThan(at('PR_SET_NO_NEW_PRIVS'));
    expect(at('landlock_restrict_self')).toBeGreaterThan(at('landlock_add_rule'));
    expect(at('seccomp(SECCOMP_SET_MODE_FILTER')).toBeGreaterThan(at('landlock_restrict_self'));
    expect(out).toContain('open("/tmp", O_PATH), write = WRITE_FILE|REMOVE_DIR');
  });
});
