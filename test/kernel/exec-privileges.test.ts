import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { describeKernel, leaks, testEnv, tsrun } from './helpers.js';

// Issue 11, item 8. `tsrun exec CMD` (docker exec) takes capabilities, no_new_privs and
// rlimits from the container's own process. `tsrun exec --process FILE` is the OCI runtime
// CLI that engines call, and runs the process as the file states (runc does too): it may
// be more privileged than the container. `exec --explain` says where.
describeKernel('exec privileges: the container\'s, or what an OCI process file states', () => {
  afterAll(() => expect(leaks()).toEqual([]));

  it('a command gets the container\'s privileges; --process gets its own, and --explain names the difference', () => {
    const name = `priv-${process.pid}`;
    const dir = mkdtempSync(join(testEnv().base, 'process-'));
    const r = tsrun(['run', '-d', '--name', name, '--cap-drop', 'ALL', '-u', '1000', '--security-opt', 'no-new-privileges', 'probe', '/probe', 'sleep', '60']);
    expect(r.code).toBe(0);
    try {
      const info = (args: string[]) => {
        const x = tsrun(['exec', ...args]);
        expect(x.stderr).toBe('');
        expect(x.code).toBe(0);
        return JSON.parse(x.stdout) as Record<string, any>;
      };
      // docker-style: the container's user, no capability, no_new_privs on
      expect(info([name, '/probe', 'info'])).toMatchObject({ uid: 1000, CapEff: '0000000000000000', CapPrm: '0000000000000000', CapBnd: '0000000000000000', NoNewPrivs: '1' });
      // -u picks another user as docker exec -u does, but the capabilities stay the container's
      expect(info(['-u', '0', name, '/probe', 'info'])).toMatchObject({ uid: 0, CapEff: '0000000000000000', CapBnd: '0000000000000000', NoNewPrivs: '1' });
      const same = tsrun(['exec', '--explain', name, '/probe', 'info']);
      expect(same.code).toBe(0);
      expect(same.stdout).toContain("compared with the container's process: nothing more");

      // OCI --process: uid 0, CAP_SYS_ADMIN, no_new_privs off, as the file says
      const p = join(dir, 'process.json');
      const admin = ['CAP_SYS_ADMIN'];
      writeFileSync(p, JSON.stringify({ args: ['/probe', 'info'], cwd: '/', user: { uid: 0, gid: 0 }, capabilities: { bounding: admin, effective: admin, permitted: admin }, noNewPrivileges: false }));
      const cap = (1n << 21n).toString(16).padStart(16, '0');
      expect(info(['--process', p, name])).toMatchObject({ uid: 0, CapEff: cap, CapBnd: cap, NoNewPrivs: '0' });
      const ex = tsrun(['exec', '--explain', '--process', p, name]);
      expect(ex.code).toBe(0);
      expect(ex.stdout).toContain('the exec process runs as uid 0 while the container\'s process runs as uid 1000');
      expect(ex.stdout).toContain('capabilities added to the effective set: CAP_SYS_ADMIN');
      expect(ex.stdout).toContain('no_new_privs is off');
      const json = JSON.parse(tsrun(['exec', '--explain', '--json', '--process', p, name]).stdout);
      expect(json.moreThanContainer).toHaveLength(5);
      // --explain runs nothing: no probe output
      expect(ex.stdout).not.toContain('"op":"info"');
    } finally {
      tsrun(['rm', '-f', name]);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
