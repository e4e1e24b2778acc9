// Layer unpacking on the real filesystem (root: ownership, mknod, trusted.* xattrs):
// hostile tars are refused naming the entry and touch nothing outside; good ones keep
// ownership, setuid bits and security.capability, and become overlayfs whiteouts.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeKernel, leaks, testEnv, tsrun } from './helpers.js';
import { layerFromDir, layerFromTar, rawTar, writeLayout, type RawEntry } from '../registry/harness.js';
import { paxRecord, tarHeader } from '../../src/image/tar.js';
import { LayerError, unpackLayer } from '../../src/image/unpack.js';
import { nativeKernel } from '../../src/kernel/native.js';
import { removeTree } from '../../src/runtime/remove-tree.js';
import { markOwner } from '../../src/runtime/state.js';

describeKernel('images: safe layer unpacking', () => {
  let work: string;
  let outside: string;
  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), 'tsrun-unpack-'));
    // a directory next to the layer: a hostile entry would land here
    outside = join(work, 'outside');
    mkdirSync(outside);
    writeFileSync(join(outside, 'passwd'), 'host file\n');
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  let n = 0;
  async function unpack(entries: RawEntry[], gzip = false) {
    const blob = join(work, `blob${++n}`);
    writeFileSync(blob, gzip ? gzipSync(rawTar(entries)) : rawTar(entries));
    const dest = join(work, `layer${n}`);
    mkdirSync(dest);
    return { dest, result: unpackLayer(blob, dest, `test${n}`) };
  }

  const hostile: [string, RawEntry[], RegExp][] = [
    ['a ".." path', [{ name: '../outside/passwd', body: 'pwned' }], /entry "..\/outside\/passwd": path contains '..': it would leave the layer/],
    ['an absolute path', [{ name: '/etc/passwd', body: 'pwned' }], /entry "\/etc\/passwd": path is absolute/],
    ['a write through a symlink planted by an earlier entry', [{ name: 'etc', type: 'symlink', linkname: '/' }, { name: 'etc/x', body: 'pwned' }], /entry "etc\/x": its parent "etc" is a symlink in this layer/],
    ['a write through a relative symlink to outside', [{ name: 'up', type: 'symlink', linkname: '../outside' }, { name: 'up/passwd', body: 'pwned' }], /entry "up": symlink to "..\/outside" points outside the layer/],
    ['a hard link to a host file', [{ name: 'pw', type: 'hardlink', linkname: '../outside/passwd' }], /entry "pw": hard link target contains '..': it points outside the layer/],
    ['an absolute hard link', [{ name: 'pw', type: 'hardlink', linkname: '/etc/shadow' }], /entry "pw": hard link target is absolute/],
    ['a hard link to a file not in the layer', [{ name: 'pw', type: 'hardlink', linkname: 'etc/shadow' }], /entry "pw": hard link to "etc\/shadow", which is not in this layer/],
    ['a device node', [{ name: 'dev/mem', type: 'char' }], /entry "dev\/mem": char device 0:0: device nodes are refused/],
    ['overlayfs\'s own xattrs', [{ name: 'd/', type: 'dir', xattrs: { 'trusted.overlay.redirect': '/etc' } }], /entry "d\/": xattr trusted.overlay.redirect is overlayfs's own/],
    // the kernel's refusal (setxattr(2): a namespace it does not know), named as every addon call names its errno
    ['an xattr in no namespace the kernel knows', [{ name: 'f', body: 'x', xattrs: { 'bogus.x': '1' } }], /entry "f" into \/.*: ENOTSUP$/],
  ];
  for (const [what, entries, msg] of hostile) {
    it(`refuses ${what}, naming the entry, and touches nothing outside`, async () => {
      const { result } = await unpack(entries);
      await expect(result).rejects.toThrow(LayerError);
      await expect(result).rejects.toThrow(msg);
      expect(readdirSync(outside)).toEqual(['passwd']);
      expect(readFileSync(join(outside, 'passwd'), 'utf8')).toBe('host file\n');
    });
  }

  it('refuses a truncated or corrupt layer', async () => {
    const blob = join(work, 'trunc');
    writeFileSync(blob, rawTar([{ name: 'f', body: 'x'.repeat(5000) }]).subarray(0, 2048));
    mkdirSync(join(work, 'trunc-dest'));
    await expect(unpackLayer(blob, join(work, 'trunc-dest'), 'trunc')).rejects.toThrow(/truncated layer/);
    const bad = rawTar([{ name: 'f', body: 'x' }]);
    bad[10] ^= 0xff;
    writeFileSync(blob, bad);
    await expect(unpackLayer(blob, join(work, 'trunc-dest'), 'bad')).rejects.toThrow(/checksum mismatch/);
  });

  it('keeps ownership, setuid bits, security.capability, links; turns .wh. entries into overlay whiteouts', async () => {
    // security.capability v2 for cap_net_raw+ep (vfs_cap_data: magic 0x02000001 with effective bit)
    const cap = Buffer.from([0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    const long = `deep/${'d'.repeat(120)}/file`;
    const { dest, result } = await unpack(
      [
        { name: './', type: 'dir' },
        { name: 'bin/', type: 'dir' },
        { name: 'bin/su', body: 'su', mode: 0o4755, uid: 0, gid: 0 },
        { name: 'bin/ping', body: 'ping', mode: 0o755, xattrs: { 'security.capability': cap } },
        { name: 'home/u/', type: 'dir', mode: 0o700, uid: 1234, gid: 5678 },
        { name: 'home/u/f', body: 'mine', uid: 1234, gid: 5678, mode: 0o640 },
        { name: 'bin/su-link', type: 'hardlink', linkname: 'bin/su' },
        { name: 'bin/sh', type: 'symlink', linkname: '/bin/busybox' },
        { name: 'etc/.wh.issue' },
        { name: 'opt/.wh..wh..opq' },
        { name: 'tmp/', type: 'dir', mode: 0o1777 },
        { name: 'run/fifo', type: 'fifo' },
        { name: long, body: 'long' },
        { name: 'bin/su', body: 'replaced', mode: 0o4755 }, // a later entry replaces an earlier one
      ],
      true,
    );
    const st = await result;
    expect(st.diffId).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(statSync(join(dest, 'bin/su')).mode & 0o7777).toBe(0o4755);
    expect(readFileSync(join(dest, 'bin/su'), 'utf8')).toBe('replaced');
    expect(nativeKernel.lgetxattr(join(dest, 'bin/ping'), 'security.capability')).toEqual(cap);
    const h = statSync(join(dest, 'home/u/f'));
    expect([h.uid, h.gid, h.mode & 0o777]).toEqual([1234, 5678, 0o640]);
    expect(statSync(join(dest, 'home/u')).mode & 0o777).toBe(0o700);
    expect(statSync(join(dest, 'tmp')).mode & 0o7777).toBe(0o1777);
    expect(readlinkSync(join(dest, 'bin/sh'))).toBe('/bin/busybox');
    expect(lstatSync(join(dest, 'run/fifo')).isFIFO()).toBe(true);
    expect(readFileSync(join(dest, long), 'utf8')).toBe('long');
    const wh = lstatSync(join(dest, 'etc/issue'));
    expect([wh.isCharacterDevice(), wh.rdev]).toEqual([true, 0]);
    expect(existsSync(join(dest, 'etc/.wh.issue'))).toBe(false);
    expect(nativeKernel.lgetxattr(join(dest, 'opt'), 'trusted.overlay.opaque')?.toString()).toBe('y');
  });

  it('a symlink planted by a lower layer is not followed by an upper layer: each layer has its own directory', () => {
    const env = { TSRUN_DATA: join(work, 'data') };
    const dir = join(work, 'two-layers');
    mkdirSync(dir, { recursive: true });
    // layer 1 plants sneaky -> <outside>; layer 2 writes sneaky/passwd (a docker save, by hand)
    const l1 = rawTar([{ name: 'sneaky', type: 'symlink', linkname: outside }]);
    const l2 = rawTar([{ name: 'sneaky/passwd', body: 'pwned\n' }]);
    writeFileSync(join(dir, 'l1.tar'), l1);
    writeFileSync(join(dir, 'l2.tar'), l2);
    const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Cmd: ['sh'] }, rootfs: { type: 'layers', diff_ids: [sha(l1), sha(l2)] } }));
    writeFileSync(join(dir, 'manifest.json'), JSON.stringify([{ Config: 'config.json', RepoTags: ['sneaky:1'], Layers: ['l1.tar', 'l2.tar'] }]));
    const imp = tsrun(['import', dir], { env });
    expect(imp.stderr).toBe('');
    expect(imp.code).toBe(0);
    expect(readFileSync(join(outside, 'passwd'), 'utf8')).toBe('host file\n');
    const [lower, upper] = JSON.parse(tsrun(['image', 'inspect', 'sneaky:1'], { env }).stdout)[0].GraphDriver.Data.LowerDirs;
    expect(readlinkSync(join(lower, 'sneaky'))).toBe(outside);
    expect(lstatSync(join(upper, 'sneaky')).isDirectory()).toBe(true); // a real directory of layer 2
    expect(readFileSync(join(upper, 'sneaky', 'passwd'), 'utf8')).toBe('pwned\n');
  });

  it('imports a rootfs tarball, an OCI layout (dir and archive) and a docker save archive, and runs them', () => {
    const env = { TSRUN_DATA: join(work, 'data2') };
    const src = testEnv().rootfs.busybox;
    const tgz = join(work, 'rootfs.tar.gz');
    execFileSync('tar', ['-czf', tgz, '-C', src, '.']);
    const a = tsrun(['import', '-c', 'CMD ["echo","from-tarball"]', tgz, 'fromtar:1'], { env });
    expect(a.stderr).toBe('');
    expect(tsrun(['run', '--rm', 'fromtar:1'], { env }).stdout).toBe('from-tarball\n');

    // zstd: Node 20's zlib has none, the zstd program does it
    const tzst = join(work, 'rootfs.tar.zst');
    execFileSync('sh', ['-c', `tar -cf - -C ${src} . | zstd -q -o ${tzst}`]);
    expect(tsrun(['import', '-c', 'CMD echo from-zstd', tzst, 'fromzstd'], { env }).stderr).toBe('');
    expect(tsrun(['run', '--rm', 'fromzstd'], { env }).stdout).toBe('from-zstd\n');

    const layout = join(work, 'layout');
    writeLayout(layout, 'v2', [{ layers: [layerFromDir(src)], config: { Cmd: ['echo', 'from-oci'] } }]);
    expect(tsrun(['import', layout, 'fromoci:2'], { env }).stderr).toBe('');
    expect(tsrun(['run', '--rm', 'fromoci:2'], { env }).stdout).toBe('from-oci\n');
    const ociTar = join(work, 'oci.tar');
    execFileSync('tar', ['-cf', ociTar, '-C', layout, '.']);
    expect(tsrun(['import', ociTar, 'fromociarchive'], { env }).stderr).toBe('');
    expect(tsrun(['run', '--rm', 'fromociarchive'], { env }).stdout).toBe('from-oci\n');

    // skopeo writes docker save's format (manifest.json, config, layer tars)
    const saved = join(work, 'saved.tar');
    execFileSync('skopeo', ['copy', '--quiet', `oci:${layout}:v2`, `docker-archive:${saved}:saved/app:3`], { stdio: 'ignore' });
    const d = tsrun(['import', saved], { env });
    expect(d.stderr).toBe('');
    expect(d.stdout).toMatch(/^saved\/app:3 sha256:[0-9a-f]{64}\n$/);
    expect(tsrun(['run', '--rm', 'saved/app:3'], { env }).stdout).toBe('from-oci\n');
    const names = (JSON.parse(tsrun(['images', '--format', 'json'], { env }).stdout) as { repository: string; tag: string }[]).map((r) => `${r.repository}:${r.tag}`);
    expect(names).toEqual(['fromoci:2', 'fromociarchive:latest', 'fromtar:1', 'fromzstd:latest', 'saved/app:3']);
    // tag: a second name for the same image; rmi of one name keeps the other
    expect(tsrun(['tag', 'fromtar:1', 'again:2'], { env }).code).toBe(0);
    expect(tsrun(['run', '--rm', 'again:2'], { env }).stdout).toBe('from-tarball\n');
    expect(tsrun(['rmi', 'fromtar:1'], { env }).stdout).toBe('Untagged: fromtar:1\n');
    expect(tsrun(['run', '--rm', 'again:2'], { env }).stdout).toBe('from-tarball\n');
    // a file that is no archive
    writeFileSync(join(work, 'junk'), 'not a tar');
    const j = tsrun(['import', join(work, 'junk'), 'junk'], { env });
    expect([j.code, j.stderr]).toEqual([125, `tsrun: import ${join(work, 'junk')}: not a tar archive (nor gzip/zstd)\n`]);
  });
});

// Trust-boundary rule 3: an archive or OCI layout is data, never paths. Each hostile import
// must end in one line naming the member (or field) and why, exit 125, and leave the store
// exactly as it was; canaries stand in for host files (never a real /etc file).
describeKernel('images: import refuses hostile archives and layouts', () => {
  let work: string;
  let canary: string;
  let data: string;
  const sha = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
  const good = rawTar([{ name: 'hello', body: 'hello\n' }]);
  const configOf = (diffIds: unknown, extra: object = {}) => JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Cmd: ['sh'] }, rootfs: { type: 'layers', diff_ids: diffIds }, ...extra });
  const manifestOf = (layers: string[], config = 'config.json', tags = ['hostile:1']) => JSON.stringify([{ Config: config, RepoTags: tags, Layers: layers }]);

  /** every path under the store, with file contents hashed: "nothing left behind" is this list unchanged */
  function storeState(): string[] {
    const root = join(data, 'images');
    const out: string[] = [];
    const todo = [''];
    while (todo.length) {
      const rel = todo.pop()!;
      for (const n of readdirSync(join(root, rel))) {
        const r = rel ? `${rel}/${n}` : n;
        const st = lstatSync(join(root, r));
        if (st.isDirectory()) {
          todo.push(r);
          if (!['tmp', 'blobs', 'blobs/sha256', 'layers'].includes(r)) out.push(`${r}/`);
        } else out.push(`${r} ${st.isFile() ? sha(readFileSync(join(root, r))) : 'special'}`);
      }
    }
    return out.sort();
  }

  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), 'tsrun-import-'));
    data = join(work, 'data');
    canary = join(work, 'canary');
    mkdirSync(canary);
    // a host JSON that parses as an image config, and a host tar that is a valid layer
    const canaryLayer = rawTar([{ name: 'CANARY', body: 'host file\n' }]);
    writeFileSync(join(canary, 'layer.tar'), canaryLayer);
    writeFileSync(join(canary, 'config.json'), configOf([sha(good)], { comment: 'CANARY' }));
    // the store already holds one image: refusing must not disturb it
    const dir = join(work, 'baseline');
    mkdirSync(dir);
    writeFileSync(join(dir, 'layer.tar'), good);
    writeFileSync(join(dir, 'config.json'), configOf([sha(good)]));
    writeFileSync(join(dir, 'manifest.json'), manifestOf(['layer.tar'], 'config.json', ['baseline:1']));
    const r = tsrun(['import', dir], { env: { TSRUN_DATA: data } });
    expect([r.code, r.stderr]).toEqual([0, '']);
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  function refused(path: string, msg: RegExp, name?: string) {
    const before = storeState();
    const t0 = Date.now();
    const r = tsrun(['import', path, ...(name ? [name] : [])], { env: { TSRUN_DATA: data }, timeout: 20_000 });
    // a member that is /dev/zero used to be read forever: the timeout kills it (signal set)
    expect({ signal: r.signal, code: r.code }).toEqual({ signal: null, code: 125 });
    expect(Date.now() - t0).toBeLessThan(15_000);
    expect(r.stderr).toMatch(/^tsrun: [^\n]*\n$/);
    expect(r.stderr).toMatch(msg);
    expect(r.stdout).toBe('');
    expect(storeState()).toEqual(before);
    expect(tsrun(['images', '--format', 'json'], { env: { TSRUN_DATA: data } }).stdout).not.toContain('hostile');
  }

  let n = 0;
  const archive = (entries: RawEntry[]) => {
    const p = join(work, `archive${++n}.tar`);
    writeFileSync(p, rawTar(entries));
    return p;
  };

  it('a docker save whose config member is a symlink to a host JSON', () => {
    const p = archive([
      { name: 'manifest.json', body: manifestOf(['layer.tar']) },
      { name: 'config.json', type: 'symlink', linkname: join(canary, 'config.json') },
      { name: 'layer.tar', body: good },
    ]);
    refused(p, new RegExp(`^tsrun: ${p}: member "config\\.json" is a symlink to "${canary}/config\\.json", outside the archive: refused\\n$`));
  });

  it('a docker save whose layer member is a symlink to a host tar', () => {
    const p = archive([
      { name: 'manifest.json', body: manifestOf(['layer.tar']) },
      { name: 'config.json', body: configOf([sha(readFileSync(join(canary, 'layer.tar')))]) },
      { name: 'layer.tar', type: 'symlink', linkname: join(canary, 'layer.tar') },
    ]);
    refused(p, /member "layer\.tar" is a symlink to ".*canary\/layer\.tar", outside the archive: refused/);
  });

  it('a layer member that is a symlink to /dev/zero does not hang', () => {
    const p = archive([
      { name: 'manifest.json', body: manifestOf(['layer.tar']) },
      { name: 'config.json', body: configOf([sha(good)]) },
      { name: 'layer.tar', type: 'symlink', linkname: '/dev/zero' },
    ]);
    refused(p, /member "layer\.tar" is a symlink to "\/dev\/zero", outside the archive: refused/);
  });

  it('a layer member that is a hard link to /dev/zero', () => {
    const p = archive([
      { name: 'manifest.json', body: manifestOf(['layer.tar']) },
      { name: 'config.json', body: configOf([sha(good)]) },
      { name: 'layer.tar', type: 'hardlink', linkname: '/dev/zero' },
    ]);
    refused(p, /entry "layer\.tar": hard link target is absolute/);
  });

  it('a docker save directory whose layer member is a device node (a private /dev/zero)', () => {
    const dir = join(work, 'devsave');
    mkdirSync(dir);
    execFileSync('mknod', [join(dir, 'layer.tar'), 'c', '1', '5']);
    writeFileSync(join(dir, 'config.json'), configOf([sha(good)]));
    writeFileSync(join(dir, 'manifest.json'), manifestOf(['layer.tar']));
    refused(dir, new RegExp(`^tsrun: ${dir}: member "layer\\.tar" is a character device, not a regular file: refused\\n$`));
  });

  it('a directory in the member path that is a symlink out of the archive', () => {
    const dir = join(work, 'dirlink');
    mkdirSync(dir);
    symlinkSync(canary, join(dir, 'sub'));
    writeFileSync(join(dir, 'manifest.json'), manifestOf(['sub/layer.tar'], 'sub/config.json'));
    refused(dir, /member "sub\/config\.json": "sub" is a symlink to ".*canary", outside the archive: refused/);
  });

  it('an OCI layout whose blob file is a symlink to a host file with the right digest', () => {
    const layout = join(work, 'oci-symlinked-blob');
    writeLayout(layout, 'v1', [{ layers: [layerFromTar(readFileSync(join(canary, 'layer.tar')), false)], config: { Cmd: ['sh'] } }]);
    const hex = sha(readFileSync(join(canary, 'layer.tar'))).slice(7);
    rmSync(join(layout, 'blobs', 'sha256', hex));
    symlinkSync(join(canary, 'layer.tar'), join(layout, 'blobs', 'sha256', hex));
    refused(layout, new RegExp(`member "blobs/sha256/${hex}" is a symlink to ".*canary/layer\\.tar", outside the archive: refused`), 'hostile:1');
  });

  it('an OCI layout whose layer digest climbs out of blobs/ (sha256:../../…/dev/zero)', () => {
    const layout = join(work, 'oci-dotdot-layer');
    writeLayout(layout, 'v1', [{ layers: [layerFromTar(good, false)], config: { Cmd: ['sh'] } }]);
    // rewrite the manifest with a layer digest that is a path, and index.json to point at it
    const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8'));
    const m = JSON.parse(readFileSync(join(layout, 'blobs', 'sha256', index.manifests[0].digest.slice(7)), 'utf8'));
    m.layers[0].digest = `sha256:${'../'.repeat(12)}dev/zero`;
    const mb = Buffer.from(JSON.stringify(m));
    writeFileSync(join(layout, 'blobs', 'sha256', sha(mb).slice(7)), mb);
    index.manifests[0] = { ...index.manifests[0], digest: sha(mb), size: mb.length };
    writeFileSync(join(layout, 'index.json'), JSON.stringify(index));
    refused(layout, /layers\[0\]\.digest "sha256:(\.\.\/)+dev\/zero" is not sha256:<64 hex digits>: refused/, 'hostile:1');
  });

  it('an OCI layout whose index digest is sha256:../../x', () => {
    const layout = join(work, 'oci-dotdot-index');
    writeLayout(layout, 'v1', [{ layers: [layerFromTar(good, false)], config: { Cmd: ['sh'] } }]);
    const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8'));
    index.manifests[0].digest = 'sha256:../../x';
    writeFileSync(join(layout, 'index.json'), JSON.stringify(index));
    refused(layout, /index\.json: manifests\[0\]\.digest "sha256:\.\.\/\.\.\/x" is not sha256:<64 hex digits>: refused/, 'hostile:1');
  });

  it('a config whose diff_ids are empty, missing, or wrong', () => {
    const cases: [unknown, RegExp][] = [
      [[], /member "config\.json": rootfs\.diff_ids lists 0 layers, the manifest 1: refused/],
      [undefined, /member "config\.json": rootfs\.diff_ids is missing: refused/],
      [['sha256:nothex'], /member "config\.json": rootfs\.diff_ids\[0\] "sha256:nothex" is not sha256:<64 hex digits>: refused/],
      [[sha('other')], /uncompressed content has digest sha256:[0-9a-f]{64}, the image config says sha256:[0-9a-f]{64}; refused/],
    ];
    for (const [ids, msg] of cases) {
      const p = archive([
        { name: 'manifest.json', body: manifestOf(['layer.tar']) },
        { name: 'config.json', body: ids === undefined ? JSON.stringify({ architecture: 'amd64', os: 'linux', config: {} }) : configOf(ids) },
        { name: 'layer.tar', body: good },
      ]);
      refused(p, msg);
    }
  });

  it('a layer with a smuggled header behind pax size=abc, and a sparse file', () => {
    const pax = paxRecord('size', Buffer.from('abc'));
    const pad = (b: Buffer) => Buffer.concat([b, Buffer.alloc((512 - (b.length % 512)) % 512)]);
    const hd = (name: string, flag: string, size: number) => tarHeader(name, { mode: 0o644, uid: 0, gid: 0, size, mtime: 1, flag, linkname: '' });
    const smuggling = Buffer.concat([hd('PaxHeader', 'x', pax.length), pad(pax), hd('innocent', '0', 512), hd('smuggled', '0', 0), Buffer.alloc(1024)]);
    const p1 = join(work, 'smuggle.tar');
    writeFileSync(p1, smuggling);
    refused(p1, /entry "innocent": pax record size="abc" is not a decimal number/, 'hostile:1');
    const p2 = join(work, 'sparse.tar');
    writeFileSync(p2, Buffer.concat([hd('holes', 'S', 0), Buffer.alloc(1024)]));
    refused(p2, /entry "holes": GNU sparse file \(type "S"\): not supported/, 'hostile:1');
  });

  it('a root filesystem directory with a manifest.json and bin -> /usr/bin is still a root filesystem', () => {
    const dir = join(work, 'merged-usr-rootfs');
    mkdirSync(join(dir, 'usr', 'bin'), { recursive: true });
    symlinkSync('/usr/bin', join(dir, 'bin'));
    writeFileSync(join(dir, 'manifest.json'), '{"an app file": true}');
    const r = tsrun(['import', dir, 'mergedusr:1'], { env: { TSRUN_DATA: data } });
    expect([r.code, r.stderr]).toEqual([0, '']);
    expect(r.stdout).toMatch(/^mergedusr:1 sha256:[0-9a-f]{64}\n$/);
  });

  it('still imports a docker save whose repeated layer is a relative symlink inside the archive', () => {
    const second = rawTar([{ name: 'two', body: '2\n' }]);
    const dir = join(work, 'legacy-save');
    mkdirSync(join(dir, 'aaa'), { recursive: true });
    mkdirSync(join(dir, 'bbb'));
    writeFileSync(join(dir, 'aaa', 'layer.tar'), good);
    symlinkSync('../aaa/layer.tar', join(dir, 'bbb', 'layer.tar')); // docker's legacy format does this
    writeFileSync(join(dir, 'ccc.tar'), second);
    writeFileSync(join(dir, 'c1.json'), configOf([sha(good), sha(second)]));
    writeFileSync(join(dir, 'c2.json'), configOf([sha(good)], { comment: 'second image' }));
    writeFileSync(join(dir, 'manifest.json'), JSON.stringify([{ Config: 'c1.json', RepoTags: ['legacy:1'], Layers: ['aaa/layer.tar', 'ccc.tar'] }, { Config: 'c2.json', RepoTags: ['legacy:2'], Layers: ['bbb/layer.tar'] }]));
    const r = tsrun(['import', dir], { env: { TSRUN_DATA: data } });
    expect([r.code, r.stderr]).toEqual([0, '']);
    expect(r.stdout).toMatch(/^legacy:1 sha256:[0-9a-f]{64}\nlegacy:2 sha256:[0-9a-f]{64}\n$/);
    // ... but not one that climbs out of it
    symlinkSync(relative(dir, canary), join(dir, 'up')); // ../canary
    writeFileSync(join(dir, 'c3.json'), configOf([sha(readFileSync(join(canary, 'layer.tar')))]));
    writeFileSync(join(dir, 'manifest.json'), manifestOf(['up/layer.tar'], 'c3.json'));
    refused(dir, /member "up\/layer\.tar": a symlink in its path climbs out of the archive: refused/);
  });
});

// Node 20's fs.rmSync({recursive}) recurses per level: 2,100 nested directories overflowed
// its stack ("Maximum call stack size exceeded") and past PATH_MAX every call fails. A layer
// or a container could so make itself unremovable, and `rmi`/`prune` failed from then on.
describeKernel('images and containers: trees deeper than the stack and PATH_MAX', () => {
  let work: string;
  let data: string;
  const env = () => ({ TSRUN_DATA: data });
  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), 'tsrun-deep-'));
    data = join(work, 'data');
  });
  afterAll(() => execFileSync('rm', ['-rf', work])); // rm(1) walks with fds: it copes with any depth

  /** depth of the deepest file below dir, as find(1) (fts, fd-relative) sees it */
  const deepest = (dir: string) => Math.max(...execFileSync('find', [dir, '-type', 'f'], { encoding: 'utf8', maxBuffer: 1 << 26 }).trim().split('\n').map((l) => l.slice(dir.length).split('/').length - 1));

  for (const depth of [2100, 5000]) {
    it(`a layer with a file under ${depth} nested directories: import, rmi and prune work`, () => {
      const p = join(work, `deep${depth}.tar`);
      writeFileSync(p, rawTar([{ name: `${'d/'.repeat(depth - 1)}d/`, type: 'dir', mode: 0o700 }, { name: `${'d/'.repeat(depth)}f`, body: 'deep\n' }]));
      const imp = tsrun(['import', p, `deep:${depth}`], { env: env(), timeout: 60_000 });
      expect([imp.code, imp.stderr]).toEqual([0, '']);
      const [layer] = JSON.parse(tsrun(['image', 'inspect', `deep:${depth}`], { env: env() }).stdout)[0].GraphDriver.Data.LowerDirs as string[];
      expect(deepest(layer!)).toBe(depth + 1);
      const rmi = tsrun(['rmi', `deep:${depth}`], { env: env(), timeout: 60_000 });
      expect([rmi.code, rmi.stderr]).toEqual([0, '']);
      expect(existsSync(layer!)).toBe(false);
      const prune = tsrun(['image', 'prune'], { env: env(), timeout: 60_000 });
      expect([prune.code, prune.stderr]).toEqual([0, '']);
    });
  }

  it('imports a root filesystem directory with 5,000 nested directories', () => {
    const dir = join(work, 'deep-rootfs');
    mkdirSync(dir);
    execFileSync(process.execPath, ['-e', `const fs=require('fs');process.chdir(${JSON.stringify(dir)});for(let i=0;i<5000;i++){fs.mkdirSync('d');process.chdir('d')}fs.writeFileSync('f','deep')`]);
    const r = tsrun(['import', dir, 'deepdir:1'], { env: env(), timeout: 60_000 });
    expect([r.code, r.stderr]).toEqual([0, '']);
    const [layer] = JSON.parse(tsrun(['image', 'inspect', 'deepdir:1'], { env: env() }).stdout)[0].GraphDriver.Data.LowerDirs as string[];
    expect(deepest(layer!)).toBe(5001);
    expect(tsrun(['rmi', 'deepdir:1'], { env: env(), timeout: 60_000 }).code).toBe(0);
    expect(existsSync(layer!)).toBe(false);
  });

  it('removeTree: names that are not UTF-8, symlinks unlinked not followed, no crossing into a mount', () => {
    const t = join(work, 'rt');
    const target = join(work, 'rt-canary');
    mkdirSync(join(t, 'a', 'b'), { recursive: true });
    mkdirSync(target);
    writeFileSync(join(target, 'keep'), 'canary');
    writeFileSync(Buffer.concat([Buffer.from(`${t}/a/`), Buffer.from([0xff, 0xfe, 0x41])]), 'latin-1 name');
    mkdirSync(Buffer.concat([Buffer.from(`${t}/a/b/`), Buffer.from([0xc3, 0x28])]));
    symlinkSync(target, join(t, 'a', 'b', 'to-canary'));
    symlinkSync(target, join(t, 'dirlink'));
    removeTree(t);
    expect(existsSync(t)).toBe(false);
    expect(readFileSync(join(target, 'keep'), 'utf8')).toBe('canary');
    // a mount left inside (say a container's volume): stop there, delete nothing in it
    mkdirSync(join(t, 'x', 'mnt'), { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', 'tsrun-test', join(t, 'x', 'mnt')]);
    try {
      writeFileSync(join(t, 'x', 'mnt', 'inside'), 'mounted');
      expect(() => removeTree(t)).toThrow(new RegExp(`^remove ${t}: "mnt" at depth 2 is on another filesystem \\(a mount point\\): not crossed, not removed$`));
      expect(readFileSync(join(t, 'x', 'mnt', 'inside'), 'utf8')).toBe('mounted');
    } finally {
      execFileSync('umount', [join(t, 'x', 'mnt')]);
    }
    removeTree(t);
    expect(existsSync(t)).toBe(false);
  });

  it('prune removes a deep unpack directory left by a killed import', () => {
    const dead = spawnSync('true').pid!;
    const left = join(data, 'images', 'layers', `.tmp-${'a'.repeat(12)}-${dead}-abcdef`);
    mkdirSync(left, { recursive: true });
    // 5,000 levels, made from inside (each mkdir relative to the last): past PATH_MAX from /
    execFileSync(process.execPath, ['-e', `const fs=require('fs');process.chdir(${JSON.stringify(left)});for(let i=0;i<5000;i++){fs.mkdirSync('d');process.chdir('d')}fs.writeFileSync('f','x');fs.symlinkSync(${JSON.stringify(work)},'link')`]);
    const r = tsrun(['image', 'prune'], { env: env(), timeout: 60_000 });
    expect([r.code, r.stderr]).toEqual([0, '']);
    expect(existsSync(left)).toBe(false);
    expect(existsSync(join(work, `deep2100.tar`))).toBe(true); // the symlink inside was removed, not followed
  });

  it('system prune removes the data of a container whose state is gone, whatever its depth', () => {
    const orphan = join(data, 'containers', 'orphan0123', 'upper');
    mkdirSync(orphan, { recursive: true });
    // made by this state root (prune removes only its own root's data: docs/state.md)
    markOwner({ root: join(work, 'run'), data }, join(data, 'containers', 'orphan0123'));
    execFileSync(process.execPath, ['-e', `const fs=require('fs');process.chdir(${JSON.stringify(orphan)});for(let i=0;i<5000;i++){fs.mkdirSync('d');process.chdir('d')}fs.writeFileSync('f','x')`]);
    const r = tsrun(['system', 'prune'], { env: { TSRUN_DATA: data, TSRUN_ROOT: join(work, 'run') }, timeout: 60_000 });
    expect([r.code, r.stderr, r.stdout]).toEqual([0, '', 'orphan0123\n']);
    expect(existsSync(join(data, 'containers', 'orphan0123'))).toBe(false);
  });

  it('a container that writes 2,100 and 5,000 nested directories is removed on exit', () => {
    // busybox sh cd's by its logical path (PATH_MAX): go 1,600 deep, make 1,600 more relative
    // to there, then move a prepared chain of `extra` levels to the bottom
    for (const extra of [0, 1800]) {
      const script = `cd /tmp && p= && i=0 && while [ $i -lt 1050 ]; do p=d/$p; i=$((i+1)); done && ${extra ? 'while [ $i -lt 1600 ]; do p=d/$p; i=$((i+1)); done && ' : ''}q= && i=0 && while [ $i -lt ${extra} ]; do q=d/$q; i=$((i+1)); done && mkdir -p $p && cd $p && mkdir -p $p && mkdir -p /tmp/o/$q && echo x > /tmp/o/\${q}f && mv /tmp/o $p && echo made`;
      const r = tsrun(['run', '--rm', 'busybox', 'sh', '-c', script], { timeout: 60_000 });
      expect([r.code, r.stderr, r.stdout]).toEqual([0, '', 'made\n']);
      // its directory (upper dir included) and mounts are gone (init processes of other
      // test runs on this host are not this test's business)
      expect(leaks().filter((l) => !l.startsWith('process:'))).toEqual([]);
    }
  });
});
