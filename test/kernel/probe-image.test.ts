import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeKernel, testEnv, tsrun, type Result } from './helpers.js';

// The built-in `probe` image (issue 13 item 4): made from the project on first use, with no
// network, like busybox; its default command prints what the container sees; it carries the
// setuid and file-capability copies the docs' demos use. A fresh data root, so the first
// `run probe` really builds and imports it.

let data = '';
let root = '';
const run = (args: string[]): Result => tsrun(args, { env: { TSRUN_DATA: data, TSRUN_ROOT: root } });

describeKernel('the built-in probe image', () => {
  beforeAll(() => {
    data = mkdtempSync(join(testEnv().base, 'probe-data-'));
    root = mkdtempSync(join(testEnv().base, 'probe-run-'));
  });
  afterAll(() => {
    expect(readdirSync(join(data, 'containers'))).toEqual([]);
    rmSync(data, { recursive: true, force: true });
    rmSync(root, { recursive: true, force: true });
  });

  it('is imported on first use and shows what the container sees', { timeout: 60_000 }, () => {
    const r = run(['run', '--rm', 'probe']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^identity\n {2}uid 0 \(euid 0\), gid 0 \(egid 0\)\n {2}uid_map +0 +0 +4294967295\n/);
    expect(r.stdout).toMatch(/^ {2}CapEff +00000000a80425fb chown,dac_override,fowner,fsetid,kill,setgid,setuid,setpcap,net_bind_service,net_raw,sys_chroot,mknod,audit_write,setfcap$/m);
    expect(r.stdout).toMatch(/^ {2}no_new_privs 0$/m);
    expect(r.stdout).toMatch(/^ {2}seccomp +2 \(filter\)$/m);
    expect(r.stdout).toMatch(/^ {2}\/proc\/sys \(proc\)$/m); // read-only
    expect(r.stdout).toMatch(/^ {2}\/proc\/keys +masked \(\/dev\/null\)$/m);
    expect(r.stdout).toMatch(/^ {2}\/sys\/firmware +masked \(empty\)$/m);
    expect(run(['images']).stdout).toMatch(/^probe +latest /m);
  });

  it('shows the controls when they are on', () => {
    const r = run(['run', '--rm', '--security-opt', 'no-new-privileges', '--cap-drop', 'ALL', '--ulimit', 'nofile=100:200', 'probe']);
    expect(r.stdout).toMatch(/^ {2}no_new_privs 1$/m);
    expect(r.stdout).toMatch(/^ {2}CapEff +0000000000000000 \(none\)$/m);
    expect(r.stdout).toMatch(/^ {2}nofile +soft 100, hard 200$/m);
  });

  it('/probe-suid makes uid 1000 root unless no_new_privs; /probe-fcap grants CAP_CHOWN from its file capability', () => {
    const suid = JSON.parse(run(['run', '--rm', '-u', '1000', 'probe', '/probe-suid', 'info']).stdout);
    expect(suid).toMatchObject({ uid: 1000, euid: 0, CapEff: '00000000a80425fb' });
    const nnp = JSON.parse(run(['run', '--rm', '-u', '1000', '--security-opt', 'no-new-privileges', 'probe', '/probe-suid', 'info']).stdout);
    expect(nnp).toMatchObject({ uid: 1000, euid: 1000, CapEff: '0000000000000000', NoNewPrivs: '1' });
    expect(JSON.parse(run(['run', '--rm', '-u', '1000', 'probe', '/probe', 'chown', '/tmp', '1', '1']).stdout)).toEqual({ op: 'chown', errno: 'EPERM' });
    expect(JSON.parse(run(['run', '--rm', '-u', '1000', 'probe', '/probe-fcap', 'chown', '/tmp', '1', '1']).stdout)).toEqual({ op: 'chown', errno: '0' });
    // a file capability outside the bounding set: the kernel refuses the execve itself
    const dropped = run(['run', '--rm', '-u', '1000', '--cap-drop', 'CHOWN', 'probe', '/probe-fcap', 'true']);
    expect(dropped.code).toBe(125);
    expect(dropped.stderr).toMatch(/execve\("\/probe-fcap".*EPERM/);
  });
});
