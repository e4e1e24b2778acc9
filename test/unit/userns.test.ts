import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  applyRemap,
  control,
  flags,
  idDbUnder,
  mapFileContent,
  nextFreeStart,
  parseSubIds,
  rangesToMapping,
  resolveRemap,
  setIdDb,
  HOST_ID_DB,
  overlayLowerDirs,
  setStatMode,
  toHostId,
  type IdDb,
} from '../../src/controls/userns.js';
import { UsageError } from '../../src/errors.js';
import type { ChildStep, ParentStep } from '../../src/plan/types.js';
import { baseSpec, ctxFor } from './privileges-fixture.js';

let dir: string;
let db: IdDb;

// A private copy of the account files: these tests never touch the host's /etc.
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tsrun-userns-'));
  mkdirSync(join(dir, 'etc'));
  writeFileSync(join(dir, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\nbob:x:1001:1001::/home/bob:/bin/sh\n');
  writeFileSync(join(dir, 'etc/group'), 'root:x:0:\nalice:x:1000:\nbob:x:1001:\nstaff:x:50:\n');
  writeFileSync(join(dir, 'etc/shadow'), 'root:*:19000:0:99999:7:::\nalice:*:19000:0:99999:7:::\nbob:*:19000:0:99999:7:::\n', { mode: 0o640 });
  writeFileSync(join(dir, 'etc/gshadow'), 'root:*::\nalice:!::\nbob:!::\nstaff:!::\n', { mode: 0o640 });
  // useradd needs root: unit tests use a stand-in that appends like it does
  // (test/kernel/userns.test.ts runs the real useradd against a temp prefix).
  db = {
    ...idDbUnder(dir),
    addUser: (name, d) => {
      writeFileSync(d.passwd, readFileSync(d.passwd, 'utf8') + `${name}:x:999:999::/nonexistent:/usr/sbin/nologin\n`);
      writeFileSync(d.group, readFileSync(d.group, 'utf8') + `${name}:x:999:\n`);
    },
  };
});
afterEach(() => {
  setIdDb(HOST_ID_DB);
  rmSync(dir, { recursive: true, force: true });
});

describe('subuid parsing and ranges', () => {
  it('parses NAME:START:COUNT and reports bad lines by file and line', () => {
    expect(parseSubIds('# c\nalice:100000:65536\n\n1001:200000:65536\n', '/x')).toEqual([
      { owner: 'alice', start: 100000, count: 65536, line: 2 },
      { owner: '1001', start: 200000, count: 65536, line: 4 },
    ]);
    expect(() => parseSubIds('alice:100000\n', '/etc/subuid')).toThrow(/\/etc\/subuid:1: expected NAME:START:COUNT/);
  });

  it('maps the ranges of a user, by name or uid, consecutively from container id 0', () => {
    const e = parseSubIds('alice:100000:65536\nbob:300000:1000\n1001:400000:65536\n', '/s');
    expect(rangesToMapping(e, { name: 'alice', id: 1000 }, '/s')).toEqual([{ containerID: 0, hostID: 100000, size: 65536 }]);
    expect(rangesToMapping(e, { name: 'bob', id: 1001 }, '/s')).toEqual([
      { containerID: 0, hostID: 300000, size: 1000 },
      { containerID: 1000, hostID: 400000, size: 65536 },
    ]);
  });

  it('rejects too small, overlapping, overflowing and root-including ranges', () => {
    const who = { name: 'alice', id: 1000 };
    expect(() => rangesToMapping(parseSubIds('alice:100000:1000\n', '/s'), who, '/s')).toThrow(/has 1000 subordinate ids; at least 65536/);
    expect(() => rangesToMapping(parseSubIds('alice:100000:65536\nbob:150000:65536\n', '/s'), who, '/s')).toThrow(
      /\/s:1: range 100000\+65536 overlaps bob:150000:65536 \(\/s:2\)/,
    );
    expect(() => rangesToMapping(parseSubIds('alice:4294900000:100000\n', '/s'), who, '/s')).toThrow(/overflows the 32-bit id space/);
    expect(() => rangesToMapping(parseSubIds('alice:0:65536\n', '/s'), who, '/s')).toThrow(/container root would be host root/);
    expect(() => rangesToMapping(parseSubIds('bob:100000:65536\n', '/s'), who, '/s')).toThrow(/no subordinate ids for "alice"/);
  });

  it('finds the first free range after existing ones', () => {
    expect(nextFreeStart([])).toBe(100000);
    expect(nextFreeStart(parseSubIds('a:100000:65536\n', '/s'))).toBe(165536);
    expect(nextFreeStart(parseSubIds('a:300000:65536\n', '/s'))).toBe(100000);
    expect(nextFreeStart(parseSubIds('a:150000:10\nb:100000:65536\n', '/s'))).toBe(165536);
  });
});

describe('--userns-remap', () => {
  it('USER uses the ranges of that user and its group', () => {
    writeFileSync(db.subuid, 'alice:100000:65536\n');
    writeFileSync(db.subgid, 'alice:200000:65536\n');
    const r = resolveRemap('alice', db);
    expect(r.uidMappings).toEqual([{ containerID: 0, hostID: 100000, size: 65536 }]);
    expect(r.gidMappings).toEqual([{ containerID: 0, hostID: 200000, size: 65536 }]);
  });

  it('USER:GROUP takes the gid ranges of GROUP', () => {
    writeFileSync(db.subuid, 'alice:100000:65536\n');
    writeFileSync(db.subgid, 'staff:300000:65536\n');
    expect(resolveRemap('alice:staff', db).gidMappings[0]!.hostID).toBe(300000);
  });

  it('errors for an unknown user or one without ranges', () => {
    expect(() => resolveRemap('nobody-here', db)).toThrow(/--userns-remap: no user "nobody-here"/);
    expect(() => resolveRemap('alice', db)).toThrow(UsageError);
    expect(() => resolveRemap('a:b:c', db)).toThrow(/expected "default" or USER\[:GROUP\]/);
  });

  it('default creates the tsrun user and free ranges in the given files only', () => {
    writeFileSync(db.subuid, 'alice:100000:65536\n');
    const notes: string[] = [];
    const r = resolveRemap('default', { ...db, notice: (m) => notes.push(m) });
    expect(notes).toEqual([
      expect.stringMatching(
        /^--userns-remap default: created the system user "tsrun" \(uid \d+\) in \S+; wrote "tsrun:165536:65536" to \S+subuid; wrote "tsrun:100000:65536" to \S+subgid \(container root will be host uid 165536\)$/,
      ),
    ]);
    expect(readFileSync(db.passwd, 'utf8')).toMatch(/^tsrun:x:\d+:\d+::[^:]*:\/usr\/sbin\/nologin$/m);
    expect(readFileSync(db.subuid, 'utf8')).toBe('alice:100000:65536\ntsrun:165536:65536\n');
    expect(readFileSync(db.subgid, 'utf8')).toBe('tsrun:100000:65536\n');
    expect(r.uidMappings).toEqual([{ containerID: 0, hostID: 165536, size: 65536 }]);
    expect(r.gidMappings).toEqual([{ containerID: 0, hostID: 100000, size: 65536 }]);
    // idempotent: a second run reuses the user and its ranges
    expect(resolveRemap('default', db)).toEqual(r);
    expect(readFileSync(db.passwd, 'utf8').match(/^tsrun:/gm)).toHaveLength(1);
    expect(readFileSync('/etc/passwd', 'utf8')).not.toMatch(/^tsrun:/m);
    expect(existsSync(db.subuid + '.lock')).toBe(false);
  });

  it('waits for shadow\'s lock file and fails clearly when it stays', () => {
    writeFileSync(db.subuid + '.lock', '');
    expect(() => resolveRemap('default', db)).toThrow(/cannot lock .*subuid\.lock: EEXIST \(held for 5 s/);
  }, 10_000);

  it('the flag adds a user namespace and the maps; --userns host removes them', () => {
    writeFileSync(db.subuid, 'alice:100000:65536\n');
    writeFileSync(db.subgid, 'alice:100000:65536\n');
    setIdDb(db);
    const s = baseSpec();
    flags.find((f) => f.syntax.startsWith('--userns-remap'))!.apply!(s, 'alice', { readImageFile: () => undefined, ncpu: 1 });
    expect(s.linux.namespaces.filter((n) => n.type === 'user')).toHaveLength(1);
    expect(s.linux.uidMappings).toEqual([{ containerID: 0, hostID: 100000, size: 65536 }]);
    flags.find((f) => f.syntax.startsWith('--userns <'))!.apply!(s, 'host', { readImageFile: () => undefined, ncpu: 1 });
    expect(s.linux.namespaces.some((n) => n.type === 'user')).toBe(false);
    expect(s.linux.uidMappings).toBeUndefined();
    expect(() => flags.find((f) => f.syntax.startsWith('--userns <'))!.apply!(s, 'private', { readImageFile: () => undefined, ncpu: 1 })).toThrow(/only "host"/);
  });
});

describe('plan', () => {
  const remapped = () => {
    const s = baseSpec();
    applyRemap(s, { user: 'tsrun', group: 'tsrun', uidMappings: [{ containerID: 0, hostID: 100000, size: 65536 }], gidMappings: [{ containerID: 0, hostID: 100000, size: 65536 }] });
    return s;
  };

  const idMaps = (steps: unknown[]) => (steps as ParentStep[]).filter((s) => s.where === 'parent' && s.action === 'id-map');

  it('writes uid_map and gid_map after clone, without setgroups deny as host root', () => {
    const steps = idMaps(control.steps(ctxFor(remapped())));
    expect(steps.map((s) => [s.where, s.phase, s.action, 'file' in s ? s.file : ''])).toEqual([
      ['parent', 'after-clone', 'id-map', 'uid_map'],
      ['parent', 'after-clone', 'id-map', 'gid_map'],
    ]);
    expect(steps[0]).toMatchObject({ content: '0 100000 65536\n' });
    expect(steps[0]!.why).toMatch(/host uid 100000/);
  });

  it('denies setgroups first when the writer lacks CAP_SETGID', () => {
    const steps = idMaps(control.steps(ctxFor(remapped(), 0x1ffffffffbfn)));
    expect(steps.map((s) => ('file' in s ? s.file : ''))).toEqual(['setgroups', 'uid_map', 'gid_map']);
  });

  it('hands the container directory to the remapped root and idmaps each image layer', () => {
    setStatMode((p) => (p === '/var/lib/tsrun/containers' ? 0o700 : 0o755));
    const ctx = {
      ...ctxFor(remapped()),
      rootfs: '/var/lib/tsrun/containers/c1/merged',
      containerDir: '/var/lib/tsrun/containers/c1',
      overlay: { lower: ['/var/lib/tsrun/images/a', '/var/lib/tsrun/images/b'], upper: '/var/lib/tsrun/containers/c1/upper', work: '/var/lib/tsrun/containers/c1/work' },
    };
    const steps = control.steps(ctx);
    const parent = steps.filter((s): s is ParentStep => s.where === 'parent');
    expect(parent.filter((s) => s.action === 'chown').map((s) => [s.path, (s as { uid: number }).uid, (s as { mode?: number }).mode])).toEqual([
      ['/var/lib/tsrun/containers', -1, 0o701],
      ['/var/lib/tsrun/containers/c1', 100000, undefined],
      ['/var/lib/tsrun/containers/c1/upper', 100000, undefined],
      ['/var/lib/tsrun/containers/c1/work', 100000, undefined],
    ]);
    expect(parent.filter((s) => s.action === 'send-mount-fd').map((s) => (s as { source: string }).source)).toEqual(['/var/lib/tsrun/images/a', '/var/lib/tsrun/images/b']);
    const child = steps.filter((s) => s.where === 'child') as ChildStep[];
    expect(child.map((s) => [s.phase, s.op, s.strs[1] ?? s.strs[0]])).toEqual([
      ['mounts', 'MOUNT', '/'],
      ['mounts', 'MOUNT_FD', '/var/lib/tsrun/containers/c1/idmap/0'],
      ['mounts', 'MOUNT_FD', '/var/lib/tsrun/containers/c1/idmap/1'],
    ]);
    expect(overlayLowerDirs(ctx)).toEqual(['/var/lib/tsrun/containers/c1/idmap/0', '/var/lib/tsrun/containers/c1/idmap/1']);
    const plain = { ...ctx, spec: baseSpec() };
    expect(overlayLowerDirs(plain)).toEqual(ctx.overlay.lower);
  });

  it('refuses the host network namespace with a user namespace', () => {
    const s = remapped();
    s.linux.namespaces = s.linux.namespaces.filter((n) => n.type !== 'network');
    expect(() => control.validate!(ctxFor(s))).toThrow(/--network host\): add --userns host/);
  });

  it('requires container root to be mapped', () => {
    const s = remapped();
    s.linux.uidMappings = [{ containerID: 1, hostID: 100001, size: 65535 }];
    s.process.user.uid = 1;
    expect(() => control.validate!(ctxFor(s))).toThrow(/linux\.uidMappings: container uid 0 must be mapped/);
  });

  it('no steps without a user namespace, or when joining one', () => {
    expect(control.steps(ctxFor(baseSpec()))).toEqual([]);
    const s = baseSpec();
    s.linux.namespaces.push({ type: 'user', path: '/proc/1/ns/user' });
    expect(control.steps(ctxFor(s))).toEqual([]);
  });

  it('validates the spec\'s mappings', () => {
    const s = remapped();
    s.process.user.uid = 70000;
    expect(() => control.validate!(ctxFor(s))).toThrow(/process\.user\.uid: 70000 is not mapped/);
    const t = remapped();
    t.linux.uidMappings = [
      { containerID: 0, hostID: 100000, size: 10 },
      { containerID: 5, hostID: 200000, size: 10 },
    ];
    expect(() => control.validate!(ctxFor(t))).toThrow(/linux\.uidMappings\[1\]: container ids overlap/);
    const u = remapped();
    delete u.linux.gidMappings;
    expect(() => control.validate!(ctxFor(u))).toThrow(/linux\.gidMappings: a user namespace needs at least one mapping/);
    const v = baseSpec();
    v.linux.uidMappings = [{ containerID: 0, hostID: 1, size: 1 }];
    expect(() => control.validate!(ctxFor(v))).toThrow(/no user namespace/);
  });

  it('maps ids and formats map files', () => {
    const m = [
      { containerID: 0, hostID: 100000, size: 1000 },
      { containerID: 1000, hostID: 400000, size: 65536 },
    ];
    expect(toHostId(m, 0)).toBe(100000);
    expect(toHostId(m, 1001)).toBe(400001);
    expect(toHostId(m, 70000)).toBeUndefined();
    expect(mapFileContent(m)).toBe('0 100000 1000\n1000 400000 65536\n');
  });
});
