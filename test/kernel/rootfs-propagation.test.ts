// linux.rootfsPropagation: every value works, and no attempt (good or failing) leaves a mount
// in the host's table. On a systemd host `/` is shared (mount_namespaces(7)), so the
// container's copy of the bundle's mount is a peer of the host's: the test reproduces that
// on a directory of its own, bind-mounted onto itself and made shared.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeKernel, leaks, probeBundle, testEnv, tsrun } from './helpers.js';

const VALUES = ['shared', 'rshared', 'slave', 'rslave', 'private', 'rprivate', 'unbindable', 'runbindable'];

let base = '';
const hostMounts = (): string[] => readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(base));

/** A bundle below the shared directory, with the mounts an engine's config.json has. */
function bundle(name: string, args: string[], linux: Record<string, unknown>, extraMounts: Record<string, unknown>[] = []): string {
  const dir = join(base, name);
  mkdirSync(dir);
  mkdirSync(join(dir, 'vol'));
  const mounts = [
    { destination: '/proc', type: 'proc', source: 'proc' },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620'] },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev'] },
    { destination: '/mnt', type: 'bind', source: join(dir, 'vol'), options: ['rbind', 'rw'] },
    ...extraMounts,
  ];
  return probeBundle(dir, args, { linux, mounts });
}

/** The optional fields (shared:N, master:N, unbindable) of the mount at `/` in a mountinfo text. */
function rootTags(mountinfo: string): string[] | undefined {
  for (const line of mountinfo.split('\n')) {
    const f = line.split(' ');
    if (f[4] !== '/') continue;
    const sep = f.indexOf('-');
    return f.slice(6, sep);
  }
  return undefined;
}

describeKernel('linux.rootfsPropagation on a host whose mounts are shared', () => {
  beforeAll(() => {
    base = mkdtempSync(join(tmpdir(), 'tsrun-prop-'));
    const mount = (...a: string[]) => expect(spawnSync('mount', a, { encoding: 'utf8' }).status).toBe(0);
    mount('--bind', base, base);
    mount('--make-shared', base);
    expect(hostMounts()).toHaveLength(1);
    expect(hostMounts()[0]).toMatch(/ shared:\d+ /);
  });

  afterAll(() => {
    const lines = hostMounts();
    spawnSync('umount', ['-R', '-l', base]);
    rmSync(base, { recursive: true, force: true });
    expect(lines).toHaveLength(1);
    expect(leaks().filter((l) => !l.startsWith('process:'))).toEqual([]);
  });

  for (const value of VALUES) {
    it(`rootfsPropagation ${value}: the container runs, / has that propagation inside, the host's table is unchanged`, () => {
      const before = hostMounts();
      const dir = bundle(value, ['/bin/cat', '/proc/self/mountinfo'], { rootfsPropagation: value });
      const r = tsrun(['run', '--rm', '--bundle', dir]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const tags = rootTags(r.stdout);
      expect(tags, r.stdout).toBeDefined();
      if (value.endsWith('shared')) expect(tags!.some((t) => /^shared:\d+$/.test(t)), tags!.join(' ')).toBe(true);
      if (value.endsWith('slave')) expect(tags!.some((t) => /^master:\d+$/.test(t)), tags!.join(' ')).toBe(true);
      if (value.endsWith('unbindable')) expect(tags).toContain('unbindable');
      if (value.endsWith('private')) expect(tags).toEqual([]);
      // the container's view is its own: none of its mounts reached the host
      expect(hostMounts()).toEqual(before);
      if (value === 'rshared') {
        // recursive: the mounts below / are shared too
        const mnt = r.stdout.split('\n').find((l) => l.split(' ')[4] === '/mnt');
        expect(mnt).toMatch(/ shared:\d+ /);
      }
    });
  }

  it('a failing start (a bind mount of a missing source, after /proc, /dev and the rest) leaves the host table unchanged', () => {
    const before = hostMounts();
    const dir = bundle('failing', ['/bin/true'], { rootfsPropagation: 'rshared' }, [{ destination: '/data', type: 'bind', source: join(base, 'no-such-dir'), options: ['bind'] }]);
    const r = tsrun(['run', '--rm', '--bundle', dir]);
    expect(r.code).toBe(125);
    expect(r.stderr).toMatch(/ENOENT/);
    expect(hostMounts()).toEqual(before);
  });

  it('an unknown value is refused before anything is mounted, naming the field', () => {
    const before = hostMounts();
    const dir = bundle('bogus', ['/bin/true'], { rootfsPropagation: 'bogus' });
    const r = tsrun(['run', '--rm', '--bundle', dir]);
    expect(r.code).toBe(125);
    expect(r.stderr).toMatch(/^tsrun: .*linux\.rootfsPropagation.*"bogus"/);
    expect(hostMounts()).toEqual(before);
  });
});
