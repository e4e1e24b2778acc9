import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { commandLine, mergeEnv, parseTmpfs, parseVolume, specFromFlags, optionKey, type RunOptions } from '../../src/spec/from-flags.js';
import { loadBundle, validateSpecShape } from '../../src/spec/bundle.js';
import { resolveUser } from '../../src/spec/users.js';
import { UsageError, UnsupportedError } from '../../src/errors.js';
import { RUN_FLAGS } from '../../src/cli/flags.js';

const PASSWD = 'root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n';
const GROUP = 'root:x:0:\nwww:x:33:\nadm:x:4:www\nnogroup:x:65534:\n';

function spec(opts: RunOptions = {}, args: string[] = [], config = { Cmd: ['sh'] } as Record<string, unknown>) {
  return specFromFlags({
    id: '0123456789abcdef'.repeat(4),
    image: { name: 'img', config },
    args,
    opts,
    rootfs: '/r',
    containerDir: '/c',
    env: { readImageFile: (p) => (p === '/etc/passwd' ? PASSWD : p === '/etc/group' ? GROUP : undefined), ncpu: 2 },
    hostEnv: { FROM_HOST: 'yes' },
    flags: RUN_FLAGS,
  });
}

describe('flags → spec', () => {
  it('builds docker\'s defaults: namespaces, mounts, env, hostname', () => {
    const s = spec();
    expect(s.hostname).toBe('0123456789ab');
    expect(s.linux.namespaces.map((n) => n.type)).toEqual(['pid', 'ipc', 'uts', 'mount', 'cgroup', 'network']);
    expect(s.mounts!.map((m) => m.destination)).toEqual(['/proc', '/dev', '/dev/pts', '/dev/shm', '/dev/mqueue', '/sys', '/etc/hostname', '/etc/hosts', '/etc/resolv.conf']);
    expect(s.process.env).toEqual(['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'HOSTNAME=0123456789ab', 'HOME=/root']);
    expect(s.process).toMatchObject({ args: ['sh'], cwd: '/', user: { uid: 0, gid: 0 }, terminal: false });
    expect(s.root).toEqual({ path: '/r', readonly: false });
  });

  it('applies docker\'s entrypoint/cmd rules', () => {
    expect(commandLine({ Entrypoint: ['/ep'], Cmd: ['a'] }, [], undefined)).toEqual(['/ep', 'a']);
    expect(commandLine({ Entrypoint: ['/ep'], Cmd: ['a'] }, ['b'], undefined)).toEqual(['/ep', 'b']);
    expect(commandLine({ Entrypoint: ['/ep'], Cmd: ['a'] }, [], '/x')).toEqual(['/x']);
    expect(commandLine({ Entrypoint: ['/ep'], Cmd: ['a'] }, ['c'], '')).toEqual(['c']);
    expect(() => spec({}, [], {})).toThrow(/no command specified/);
  });

  it('merges env: image, then -e (host value for a bare name), later wins', () => {
    const s = spec({ env: ['A=1', 'FROM_HOST', 'UNSET_ON_HOST', 'A=2'], tty: true }, [], { Cmd: ['sh'], Env: ['A=0', 'IMG=1'] });
    expect(s.process.env).toEqual(expect.arrayContaining(['A=2', 'IMG=1', 'FROM_HOST=yes', 'TERM=xterm']));
    expect(s.process.env!.some((e) => e.startsWith('UNSET_ON_HOST'))).toBe(false);
    expect(mergeEnv(['A=1', 'B=1'], ['A=2'])).toEqual(['A=2', 'B=1']);
    expect(() => spec({ env: ['=x'] })).toThrow(/--env: invalid variable name/);
  });

  it('resolves users from the image\'s passwd and group', () => {
    expect(resolveUser('www', PASSWD, GROUP)).toEqual({ uid: 33, gid: 33, additionalGids: [4], home: '/var/www', username: 'www' });
    expect(resolveUser('1000:adm', PASSWD, GROUP)).toMatchObject({ uid: 1000, gid: 4, additionalGids: [] });
    expect(() => resolveUser('ghost', PASSWD, GROUP)).toThrow(/--user "ghost": no user "ghost" in the image's \/etc\/passwd/);
    expect(() => resolveUser('1:ghosts', PASSWD, GROUP)).toThrow(/no group "ghosts"/);
    expect(() => resolveUser('99999999999', PASSWD, GROUP)).toThrow(/out of range/);
    expect(spec({ user: 'www' }).process.env).toContain('HOME=/var/www');
  });

  it('parses -v and --tmpfs, rejecting what docker would', () => {
    expect(parseVolume('/tmp:/data:ro')).toEqual({ destination: '/data', type: 'bind', source: '/tmp', options: ['rbind', 'rprivate', 'ro'] });
    expect(() => parseVolume('named:/data')).toThrow(/named volumes are not supported/);
    expect(() => parseVolume('/tmp:rel')).toThrow(/container path must be absolute/);
    expect(() => parseVolume('/tmp:/data:rx')).toThrow(/unknown option "rx"/);
    expect(() => parseVolume('/tmp:/d:Z')).toThrow(UnsupportedError);
    expect(() => parseVolume('/definitely/not/here:/d')).toThrow(/host path \/definitely\/not\/here: ENOENT/);
    expect(() => parseVolume('/tmp:/')).toThrow(/cannot mount over/);
    expect(parseTmpfs('/run:size=1m')).toEqual({ destination: '/run', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'noexec', 'size=1m'] });
  });

  it('rejects bad hostnames and networks with the flag named', () => {
    expect(() => spec({ hostname: 'bad_host!' })).toThrow(/--hostname "bad_host!"/);
    expect(() => spec({ network: 'bridge' })).toThrow(/--network "bridge"/);
    expect(() => spec({ workdir: 'rel' })).toThrow(/--workdir/);
    expect(() => spec({ user: '' + ':' })).toThrow(UsageError);
  });

  it('maps commander keys from flag syntax', () => {
    expect(optionKey('--read-only')).toBe('readOnly');
    expect(optionKey('-v, --volume <x>')).toBe('volume');
  });
});

describe('bundles', () => {
  it('names the missing or wrong field', () => {
    expect(() => validateSpecShape([])).toThrow(/^config.json: must be object \(got \[\]\)$/);
    expect(() => validateSpecShape({})).toThrow(/^config.json: ociVersion: required/);
    expect(() => validateSpecShape({ ociVersion: '2.0' })).toThrow(/^config.json: ociVersion: unsupported/);
    const ok = { ociVersion: '1.0.2', process: { args: ['x'], cwd: '/', user: { uid: 0, gid: 0 } }, root: { path: 'r' }, linux: { namespaces: [] } };
    expect(() => validateSpecShape({ ...ok, process: { ...ok.process, args: [] } })).toThrow(/^config.json: process.args/);
    expect(() => validateSpecShape({ ...ok, root: {} })).toThrow(/^config.json: root.path: required/);
    // config-linux.md: namespaces not listed are the runtime's own, so a missing list is none
    expect(validateSpecShape({ ...ok, linux: {} }).linux.namespaces).toEqual([]);
    expect(() => validateSpecShape({ ...ok, linux: { namespaces: 'pid' } })).toThrow(/^config.json: linux\.namespaces: must be/);
    // hooks pass the shape check; src/controls/hooks.ts checks them field by field (test/unit/hooks.test.ts)
    expect(validateSpecShape({ ...ok, hooks: { prestart: [{ path: '/x' }] } }).hooks).toEqual({ prestart: [{ path: '/x' }] });
    expect(validateSpecShape(ok).root.path).toBe('r');
  });

  it('resolves root.path against the bundle and checks it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsrun-unit-'));
    try {
      const cfg = { ociVersion: '1.2.0', process: { args: ['x'], cwd: '/', user: { uid: 0, gid: 0 } }, root: { path: 'rootfs' }, linux: { namespaces: [] } };
      writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
      expect(() => loadBundle(dir)).toThrow(/^config.json: root.path: .*rootfs: ENOENT/);
      mkdirSync(join(dir, 'rootfs'));
      expect(loadBundle(dir).rootfs).toBe(join(dir, 'rootfs'));
      expect(() => loadBundle(join(dir, 'nope'))).toThrow(/--bundle .*cannot read .*config.json \(ENOENT/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
