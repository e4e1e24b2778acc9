import { execFileSync, spawn } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { BUILTIN_CONFIG } from '../../src/image/builtin.js';
import { importRootfsDir } from '../../src/image/import.js';
import { ContentStore } from '../../src/image/store.js';
import type { ImageConfig } from '../../src/image/types.js';
import { errnoName } from '../../src/kernel/errno.js';
import { nativeKernel as kernel } from '../../src/kernel/native.js';
import { describeKernel, leaks, testEnv, tsrun } from './helpers.js';

// Trust-boundary rule 2 (docs/host-access.md): whatever tsrun reads or creates in an image
// or a running container from the host side resolves inside that root. Every attack here
// aims at a CANARY directory in a host temp dir (never a real /etc file): a passwd naming
// `alice` with uid 4242, gid 4343 and home /canary-home, which no image below contains.

const CANARY_PASSWD = 'alice:x:4242:4343:canary:/canary-home:/bin/sh\n';
const CANARY_GROUP = 'canary:x:4343:alice\n';

describeKernel('host-side access to image and container content stays inside their root', () => {
  let canary: string; // host temp dir, absent from every container
  let work: string;
  const images: string[] = [];

  beforeAll(() => {
    canary = mkdtempSync(join(tmpdir(), 'tsrun-canary-'));
    writeFileSync(join(canary, 'passwd'), CANARY_PASSWD);
    writeFileSync(join(canary, 'group'), CANARY_GROUP);
    work = mkdtempSync(join(tmpdir(), 'tsrun-host-access-'));
  });

  afterAll(() => {
    for (const i of images) tsrun(['rmi', i]);
    rmSync(canary, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
    expect(leaks()).toEqual([]);
  });

  /** busybox's root with `edit` applied, imported through the store as `tsrun import` does */
  async function image(name: string, edit: (root: string) => void, config: ImageConfig = BUILTIN_CONFIG): Promise<string> {
    const e = testEnv();
    const root = join(work, name);
    cpSync(e.rootfs.busybox, root, { recursive: true, verbatimSymlinks: true });
    edit(root);
    const store = new ContentStore(join(e.data, 'images'));
    await importRootfsDir(store, root, name, config);
    images.push(name);
    return name;
  }

  it('readFileInRoot: symlinks and ".." stop at the root; FIFOs and devices are never opened; size is bounded', async () => {
    const root = mkdtempSync(join(work, 'root-'));
    mkdirSync(join(root, 'data'));
    writeFileSync(join(root, 'data', 'f'), 'in root\n');
    symlinkSync(join(canary, 'passwd'), join(root, 'abs')); // exists on the host, not in the root
    symlinkSync(`../../../../../..${join(canary, 'passwd')}`, join(root, 'data', 'rel'));
    symlinkSync('/data/f', join(root, 'inside'));
    symlinkSync(canary, join(root, 'dir'));
    writeFileSync(join(root, 'big'), Buffer.alloc(4097));
    execFileSync('mkfifo', [join(root, 'fifo')]);
    const read = (p: string, max = 4096) => {
      try {
        return kernel.readFileInRoot(root, p, max).toString();
      } catch (e) {
        const x = e as { errno: number; fileType?: string };
        return `${errnoName(x.errno)}${x.fileType ? ` ${x.fileType}` : ''}`;
      }
    };
    expect(read('/abs')).toBe('ENOENT');
    expect(read('/data/rel')).toBe('ENOENT');
    expect(read('/inside')).toBe('in root\n');
    expect(read('/data/../../../data/f')).toBe('in root\n');
    expect(read('/dir/passwd')).toBe('ENOENT');
    expect(read('/data')).toBe('EISDIR directory');
    expect(read('/big')).toBe('EFBIG');
    expect(read('/big', 4097)).toHaveLength(4097);
    // a writer blocks in open(2) until someone opens the FIFO for reading: it must stay blocked
    const writer = spawn('/bin/sh', ['-c', `echo x > ${join(root, 'fifo')}`], { stdio: 'ignore' });
    const exited = new Promise((r) => writer.on('exit', r));
    await new Promise((r) => setTimeout(r, 200));
    expect(read('/fifo')).toBe('EINVAL fifo');
    await new Promise((r) => setTimeout(r, 200));
    expect(writer.exitCode).toBeNull();
    writer.kill('SIGKILL');
    await exited;
    expect(() => kernel.readDirInRoot(root, '/dir', 10)).toThrow(/ENOENT|No such file/);
    expect(kernel.readDirInRoot(root, '/data', 10).sort()).toEqual(['f', 'rel']);
  });

  it('-u NAME and an image User never read a host passwd through an absolute symlink in the image', async () => {
    const img = await image('passwd-to-host', (r) => {
      unlinkSync(join(r, 'etc/passwd'));
      symlinkSync(join(canary, 'passwd'), join(r, 'etc/passwd'));
    });
    const run = tsrun(['run', '--rm', '-u', 'alice', img, 'sh', '-c', 'id -u; id -g; echo $HOME']);
    expect(run.stdout).not.toContain('4242');
    expect(run.stderr).toMatch(/^tsrun: --user "alice": no user "alice" in the image's \/etc\/passwd\n$/);
    expect(run.code).toBe(125);
    const explain = tsrun(['explain', '-u', 'alice', img, 'id']);
    expect(explain.stdout).not.toContain('4242');
    expect(explain.code).toBe(125);

    const userImg = await image('user-to-host', (r) => {
      unlinkSync(join(r, 'etc/passwd'));
      symlinkSync(join(canary, 'passwd'), join(r, 'etc/passwd'));
    }, { ...BUILTIN_CONFIG, User: 'alice' });
    const byConfig = tsrun(['run', '--rm', userImg, 'sh', '-c', 'id -u; echo $HOME']);
    expect(byConfig.stdout).not.toContain('4242');
    expect(byConfig.stderr).toMatch(/^tsrun: image docker.io\/library\/user-to-host:latest User "alice": no user "alice" in the image's \/etc\/passwd/);
    expect(byConfig.code).toBe(125);
  });

  it('an absolute symlink to /etc/passwd resolves inside the image, as the container would see it', async () => {
    // a directory no host has: on the host side the symlink dangles, in the image it does not
    const inImage = `/tsrun-users-${process.pid}`;
    const img = await image('passwd-in-image', (r) => {
      mkdirSync(join(r, inImage));
      writeFileSync(join(r, inImage, 'passwd'), 'bob:x:5151:5152:in image:/home/bob:/bin/sh\n');
      writeFileSync(join(r, inImage, 'group'), 'extra:x:5153:bob\n');
      unlinkSync(join(r, 'etc/passwd'));
      symlinkSync(join(inImage, 'passwd'), join(r, 'etc/passwd'));
      rmSync(join(r, 'etc/group'), { force: true });
      symlinkSync(`..${inImage}/group`, join(r, 'etc/group')); // relative
    });
    const r = tsrun(['run', '--rm', '-u', 'bob', img, 'sh', '-c', 'id -u; id -g; id -G; echo $HOME']);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('5151\n5152\n5152 5153\n/home/bob\n');
    expect(r.code).toBe(0);
  });

  it('a FIFO at /etc/group fails run and explain at once, naming the path, instead of hanging them', async () => {
    const img = await image('group-fifo', (r) => {
      writeFileSync(join(r, 'etc/passwd'), 'alice:x:1000:1000::/home/alice:/bin/sh\n');
      rmSync(join(r, 'etc/group'), { force: true });
      execFileSync('mkfifo', [join(r, 'etc/group')]);
    });
    for (const args of [['explain', '-u', 'alice', img, 'id'], ['run', '--rm', '-u', 'alice', img, 'id']]) {
      const t0 = Date.now();
      const r = tsrun(args, { timeout: 10_000 });
      expect(r.signal, `${args[0]} hung (killed after 10 s)`).toBeNull();
      expect(Date.now() - t0).toBeLessThan(5_000);
      expect(r.stderr).toMatch(/^tsrun: --user "alice": the image's \/etc\/group: EINVAL \(not a regular file: fifo\)\n$/);
      expect(r.code).toBe(125);
    }
  });

  it('exec -u NAME reads the container\'s passwd inside its root: symlinks planted by the container stay in it', () => {
    const id = tsrun(['run', '-d', 'busybox', 'sleep', '60']).stdout.trim();
    try {
      // the container plants /etc/passwd -> the host canary (a path that exists only on the host)
      expect(tsrun(['exec', id, 'ln', '-sf', join(canary, 'passwd'), '/etc/passwd']).code).toBe(0);
      const stolen = tsrun(['exec', '-u', 'alice', id, 'id', '-u']);
      expect(stolen.stdout).not.toContain('4242');
      expect(stolen.stderr).toMatch(/^tsrun: --user "alice": no user "alice" in the container's \/etc\/passwd\n$/);
      expect(stolen.code).toBe(125);

      // an absolute symlink to a file of the container's own resolves in the container
      const plant = 'mkdir -p /users && echo "carol:x:7171:7172::/home/carol:/bin/sh" > /users/passwd && ln -sf /users/passwd /etc/passwd';
      expect(tsrun(['exec', id, 'sh', '-c', plant]).code).toBe(0);
      const own = tsrun(['exec', '-u', 'carol', id, 'sh', '-c', 'id -u; id -g']);
      expect(own.stderr).toBe('');
      expect(own.stdout).toBe('7171\n7172\n');

      // a magic link (/proc/<pid>/root, /proc/<pid>/fd/N) is refused: RESOLVE_NO_MAGICLINKS
      expect(tsrun(['exec', id, 'ln', '-sf', '/proc/1/root/users/passwd', '/etc/passwd']).code).toBe(0);
      const magic = tsrun(['exec', '-u', 'carol', id, 'id', '-u']);
      expect(magic.stderr).toMatch(/^tsrun: --user "carol": the container's \/etc\/passwd: ELOOP \(Too many levels of symbolic links\)\n$/);
      expect(magic.code).toBe(125);
      expect(tsrun(['exec', id, 'ln', '-sf', '/users/passwd', '/etc/passwd']).code).toBe(0);

      // a FIFO planted at /etc/group must not hang exec
      expect(tsrun(['exec', id, 'sh', '-c', 'rm -f /etc/group && mkfifo /etc/group']).code).toBe(0);
      const fifo = tsrun(['exec', '-u', 'carol', id, 'id', '-u'], { timeout: 10_000 });
      expect(fifo.signal, 'exec hung (killed after 10 s)').toBeNull();
      expect(fifo.stderr).toMatch(/^tsrun: --user "carol": the container's \/etc\/group: EINVAL \(not a regular file: fifo\)\n$/);
      expect(fifo.code).toBe(125);
    } finally {
      tsrun(['rm', '-f', id]);
    }
  });

  it('-w, --tmpfs and -v targets and exec -w behind absolute symlinks resolve inside the root (the init opens them with RESOLVE_IN_ROOT)', async () => {
    const target = mkdtempSync(join(tmpdir(), 'tsrun-canary-dir-'));
    const vol = mkdtempSync(join(tmpdir(), 'tsrun-vol-'));
    const inImage = `/tsrun-dirs-${process.pid}`; // exists in the image only
    try {
      const img = await image('targets-to-host', (r) => {
        mkdirSync(join(r, inImage));
        for (const l of ['wd', 'tmp-target', 'vol-target']) {
          symlinkSync(target, join(r, `host-${l}`));
          symlinkSync(inImage, join(r, `img-${l}`));
        }
      });
      // through a symlink to the host's canary: the path does not exist in the root, so ENOENT
      for (const flags of [['-w', '/host-wd'], ['-w', '/host-wd/sub'], ['--tmpfs', '/host-tmp-target'], ['--tmpfs', '/host-tmp-target/t'], ['-v', `${vol}:/host-vol-target`], ['-v', `${vol}:/host-vol-target/v`]]) {
        const r = tsrun(['run', '--rm', ...flags, img, 'true']);
        expect(r.stderr, flags.join(' ')).toMatch(/^tsrun: (chdir|mkdir -p|mount)\(?.*: ENOENT \(No such file or directory\) \[(process|mounts)\]\n$/);
        expect(r.code).toBe(125);
      }
      // through a symlink to the image's own directory: made there
      const r = tsrun(['run', '--rm', '-w', '/img-wd/sub', '--tmpfs', '/img-tmp-target/t', '-v', `${vol}:/img-vol-target/v`, img, 'sh', '-c', `pwd; touch /img-wd/sub/x /img-tmp-target/t/y /img-vol-target/v/z && ls ${inImage}`]);
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe(`${inImage}/sub\nsub\nt\nv\n`);
      expect(r.code).toBe(0);
      expect(readdirSync(target)).toEqual([]);
      expect(readdirSync(vol)).toEqual(['z']);

      // exec -w through a symlink the container planted: chdir happens after setns, in its root
      const id = tsrun(['run', '-d', 'busybox', 'sleep', '60']).stdout.trim();
      try {
        expect(tsrun(['exec', id, 'ln', '-s', target, '/wd']).code).toBe(0);
        const ex = tsrun(['exec', '-w', '/wd', id, 'pwd']);
        expect(ex.stdout).toBe('');
        expect(ex.stderr).toMatch(/chdir.*ENOENT/);
        expect(ex.code).toBe(125);
        expect(readdirSync(target)).toEqual([]);
      } finally {
        tsrun(['rm', '-f', id]);
      }
    } finally {
      rmSync(target, { recursive: true, force: true });
      rmSync(vol, { recursive: true, force: true });
    }
  });

  it('the bind targets whose directory is missing (/etc of a FROM-scratch image, a -v file) are made inside the root, never through an image\'s symlink to the host', async () => {
    const target = mkdtempSync(join(tmpdir(), 'tsrun-canary-dir-'));
    const file = join(work, 'bind-me');
    writeFileSync(file, 'x\n');
    try {
      // /etc is an absolute symlink to the host's canary directory: the init's mkdir -p of a
      // missing parent (native/init.c mkfile) resolves it in the root, where it names nothing
      const img = await image('etc-to-host', (r) => {
        rmSync(join(r, 'etc'), { recursive: true, force: true });
        symlinkSync(target, join(r, 'etc'));
        symlinkSync(target, join(r, 'host-link'));
      });
      for (const flags of [[], ['-v', `${file}:/host-link/sub/f`]]) {
        const r = tsrun(['run', '--rm', ...flags, img, 'true']);
        expect(r.stderr, flags.join(' ')).toMatch(/: ENOENT \(No such file or directory\) \[mounts\]\n$/);
        expect(r.code).toBe(125);
      }
      expect(readdirSync(target)).toEqual([]);
    } finally {
      rmSync(target, { recursive: true, force: true });
    }
  });

  it('a bundle\'s tmpcopyup check lists the rootfs\'s own directory, not the host one a symlink names', () => {
    const e = testEnv();
    const secret = mkdtempSync(join(tmpdir(), 'tsrun-canary-dir-'));
    writeFileSync(join(secret, 'host-secret-name'), '');
    const dir = mkdtempSync(join(tmpdir(), 'tsrun-bundle-'));
    try {
      cpSync(e.rootfs.busybox, join(dir, 'rootfs'), { recursive: true, verbatimSymlinks: true });
      symlinkSync(secret, join(dir, 'rootfs', 'data'));
      const spec = {
        ociVersion: '1.2.0',
        process: { args: ['true'], cwd: '/', user: { uid: 0, gid: 0 }, env: ['PATH=/bin'] },
        root: { path: 'rootfs' },
        mounts: [{ destination: '/data', type: 'tmpfs', source: 'tmpfs', options: ['tmpcopyup'] }],
        linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }] },
      };
      writeFileSync(join(dir, 'config.json'), JSON.stringify(spec));
      const r = tsrun(['explain', '--bundle', dir]);
      expect(r.stderr).not.toContain('host-secret-name');
      expect(r.code).toBe(0);
      // the same with the directory really in the rootfs: refused, naming its entries
      rmSync(join(dir, 'rootfs', 'data'));
      mkdirSync(join(dir, 'rootfs', 'data'));
      writeFileSync(join(dir, 'rootfs', 'data', 'own-file'), '');
      const own = tsrun(['explain', '--bundle', dir]);
      expect(own.stderr).toMatch(/"tmpcopyup" on \/data: the rootfs has 1 entry there \(own-file\)/);
      expect(own.code).toBe(125);
    } finally {
      rmSync(dir, { recursive: true, force: true });
      rmSync(secret, { recursive: true, force: true });
    }
  });
});
