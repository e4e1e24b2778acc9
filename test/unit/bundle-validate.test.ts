// Malformed OCI bundles: each must end in one TsrunError line that names the field as a
// JSON path, never a TypeError (an "internal error" with a stack) and never silent
// acceptance. Built from one minimal valid config.json; the rootfs is an empty directory,
// since everything here is decided before any kernel call.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadBundle } from '../../src/spec/bundle.js';
import { buildPlan, childSteps } from '../../src/plan/build.js';
import { encodePlan } from '../../src/plan/encode.js';
import { TsrunError } from '../../src/errors.js';
import type { BuildContext } from '../../src/plan/types.js';

const base = mkdtempSync(join(tmpdir(), 'tsrun-unit-bundle-'));
afterAll(() => rmSync(base, { recursive: true, force: true }));

type Json = Record<string, any>;

function minimal(): Json {
  return {
    ociVersion: '1.2.0',
    process: { args: ['/bin/true'], cwd: '/', user: { uid: 0, gid: 0 }, env: ['PATH=/bin'] },
    root: { path: 'rootfs' },
    mounts: [{ destination: '/proc', type: 'proc', source: 'proc' }],
    linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }] },
  };
}

const withUserns = (s: Json) => {
  s.linux.namespaces.push({ type: 'user' });
  s.linux.uidMappings = [{ containerID: 0, hostID: 100000, size: 65536 }];
  s.linux.gidMappings = [{ containerID: 0, hostID: 100000, size: 65536 }];
};

let n = 0;
function bundle(edit: (s: Json) => void): string {
  const dir = join(base, String(n++));
  mkdirSync(join(dir, 'rootfs'), { recursive: true });
  const s = minimal();
  edit(s);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(s));
  return dir;
}

/** What `run --bundle` does before the first kernel call: load, plan, encode. */
function plan(dir: string, capEff = (1n << 41n) - 1n): void {
  const b = loadBundle(dir);
  const ctx: BuildContext = { id: 'x'.repeat(64), spec: b.spec, rootfs: b.rootfs, containerDir: join(dir, 'c'), host: { capEff, capBnd: capEff, lsms: ['capability'], ncpu: 2 }, terminal: false, waitStart: false };
  encodePlan(childSteps(buildPlan(ctx)));
}

function refusal(dir: string, capEff?: bigint): TsrunError {
  try {
    plan(dir, capEff);
  } catch (e) {
    if (e instanceof TsrunError) return e;
    throw new Error(`not a TsrunError (would print a stack): ${(e as Error)?.stack ?? String(e)}`);
  }
  throw new Error('accepted silently');
}

// [what, edit, the JSON path the error must name]
const MALFORMED: [string, (s: Json) => void, string][] = [
  ['env is a string', (s) => (s.process.env = 'PATH=/bin'), 'process.env'],
  ['env element is a number', (s) => (s.process.env = ['PATH=/bin', 'A=1', 'B=2', 7]), 'process.env[3]'],
  ['namespace path is a number', (s) => (s.linux.namespaces[0].path = 5), 'linux.namespaces[0].path'],
  ['mount options is a string', (s) => (s.mounts[0].options = 'ro,nosuid'), 'mounts[0].options'],
  ['cgroupsPath is a number', (s) => (s.linux.cgroupsPath = 7), 'linux.cgroupsPath'],
  ['capabilities is a string', (s) => (s.process.capabilities = 'all'), 'process.capabilities'],
  ['capabilities.bounding is a string', (s) => (s.process.capabilities = { bounding: 'CAP_KILL' }), 'process.capabilities.bounding'],
  ['capabilities.bounding has null', (s) => (s.process.capabilities = { bounding: [null] }), 'process.capabilities.bounding[0]'],
  ['uidMappings is a string', (s) => (withUserns(s), (s.linux.uidMappings = 'x')), 'linux.uidMappings'],
  ['uidMappings has null', (s) => (withUserns(s), (s.linux.uidMappings = [null])), 'linux.uidMappings[0]'],
  ['a NUL byte in args', (s) => (s.process.args = ['/bin/echo', 'a\u0000b']), 'process.args[1]'],
  ['mounts has null', (s) => (s.mounts = [null]), 'mounts[0]'],
  ['namespaces has null', (s) => (s.linux.namespaces = [null]), 'linux.namespaces[0]'],
  ['devices has null', (s) => (s.linux.devices = [null]), 'linux.devices[0]'],
  ['100k additionalGids', (s) => (s.process.user.additionalGids = Array.from({ length: 100_000 }, (_, i) => i + 1)), 'process.user.additionalGids'],
  ['cpuset 0-99999999', (s) => (s.linux.resources = { cpu: { cpus: '0-99999999' } }), 'linux.resources.cpu.cpus'],
];

describe('malformed bundles: one line naming the field, never a stack', () => {
  it('the minimal bundle itself is valid', () => {
    expect(() => plan(bundle(() => {}))).not.toThrow();
  });
  it.each(MALFORMED)('%s → %s', (_what, edit, field) => {
    const e = refusal(bundle(edit));
    expect(e.exitCode).toBe(125);
    expect(e.message).not.toContain('\n');
    // the path is named as a whole, e.g. process.env[3], not a prefix of another path
    expect(e.message).toMatch(new RegExp(`(^|: )${field.replace(/[.[\]]/g, '\\$&')}: `));
    expect(Buffer.byteLength(e.message)).toBeLessThan(500);
  });
});

// Settings tsrun has no mechanism for on this host: refused, not dropped.
const UNAPPLIABLE: [string, (s: Json) => void, RegExp][] = [
  ['process.apparmorProfile without AppArmor', (s) => (s.process.apparmorProfile = 'docker-default'), /process\.apparmorProfile[: ].*AppArmor (is not active|support)/],
  ['process.selinuxLabel without SELinux', (s) => (s.process.selinuxLabel = 'system_u:system_r:container_t:s0'), /process\.selinuxLabel[: ].*SELinux (is not active|support)/],
  ['linux.mountLabel without SELinux', (s) => (s.linux.mountLabel = 'system_u:object_r:container_file_t:s0'), /linux\.mountLabel[: ].*SELinux (is not active|support)/],
  ['hostname without a UTS namespace', (s) => (s.hostname = 'box'), /hostname: .*uts/],
  ['domainname without a UTS namespace', (s) => (s.domainname = 'example'), /domainname: .*uts/],
  ['linux.resources.network', (s) => (s.linux.resources = { network: { classID: 1048577 } }), /linux\.resources\.network: /],
  ['linux.resources not an object', (s) => (s.linux.resources = 5), /linux\.resources: must be object/],
];

describe('settings tsrun cannot apply are refused, not ignored', () => {
  it.each(UNAPPLIABLE)('%s', (_what, edit, msg) => {
    const e = refusal(bundle(edit));
    expect(e.message).toMatch(msg);
  });
  it('every capability, when tsrun lacks CAP_SYS_RESOURCE (as root here): refused, not trimmed', () => {
    const all = Array.from({ length: 41 }, (_, i) => i);
    const names = (bits: number[]) => bits.map((b) => `CAP_${['CHOWN', 'DAC_OVERRIDE', 'DAC_READ_SEARCH', 'FOWNER', 'FSETID', 'KILL', 'SETGID', 'SETUID', 'SETPCAP', 'LINUX_IMMUTABLE', 'NET_BIND_SERVICE', 'NET_BROADCAST', 'NET_ADMIN', 'NET_RAW', 'IPC_LOCK', 'IPC_OWNER', 'SYS_MODULE', 'SYS_RAWIO', 'SYS_CHROOT', 'SYS_PTRACE', 'SYS_PACCT', 'SYS_ADMIN', 'SYS_BOOT', 'SYS_NICE', 'SYS_RESOURCE', 'SYS_TIME', 'SYS_TTY_CONFIG', 'MKNOD', 'LEASE', 'AUDIT_WRITE', 'AUDIT_CONTROL', 'SETFCAP', 'MAC_OVERRIDE', 'MAC_ADMIN', 'SYSLOG', 'WAKE_ALARM', 'BLOCK_SUSPEND', 'AUDIT_READ', 'PERFMON', 'BPF', 'CHECKPOINT_RESTORE'][b]}`);
    const dir = bundle((s) => (s.process.capabilities = { bounding: names(all), effective: names(all), permitted: names(all) }));
    const e = refusal(dir, 0x1fffeffffffn);
    expect(e.message).toMatch(/^process\.capabilities: CAP_SYS_RESOURCE requested but tsrun itself does not hold it/);
    // the bounding set alone asks for it too (root's permitted set after execve is the bounding set)
    const bnd = bundle((s) => (s.process.capabilities = { bounding: ['CAP_SYS_RESOURCE'] }));
    expect(refusal(bnd, 0x1fffeffffffn).message).toMatch(/CAP_SYS_RESOURCE requested/);
  });

  it('an empty apparmorProfile / selinuxLabel means "none" and is accepted', () => {
    expect(() => plan(bundle((s) => ((s.process.apparmorProfile = ''), (s.process.selinuxLabel = ''))))).not.toThrow();
  });
});

describe('error lines quote at most ~200 bytes of a value', () => {
  it('a 1 MB bad value is cut', () => {
    const e = refusal(bundle((s) => (s.process.cwd = 'x'.repeat(1 << 20))));
    expect(e.message).toMatch(/^(config\.json: )?process\.cwd: /);
    expect(Buffer.byteLength(e.message)).toBeLessThan(400);
  });
  it('a 1 MB wrongly typed value is cut', () => {
    const e = refusal(bundle((s) => (s.process.env = { big: 'y'.repeat(1 << 20) })));
    expect(Buffer.byteLength(e.message)).toBeLessThan(400);
  });
});

describe('the EXEC operation', () => {
  it('carries any number of arguments and variables in its blob, and refuses a NUL naming the field', async () => {
    const { exec } = await import('../../src/plan/ops.js');
    const argv = Array.from({ length: 10_000 }, (_, i) => `a${i}`);
    const env = Array.from({ length: 1000 }, (_, i) => `V${i}=${i}`);
    const o = exec('sh', argv, env);
    expect(o.strs).toEqual(['sh']);
    expect(o.ints).toEqual([10_000n, 1000n]);
    expect(Buffer.from(o.blob!).toString().split('\0').slice(0, -1)).toEqual([...argv, ...env]);
    expect(o.text.length).toBeLessThan(400);
    expect(() => encodePlan([o])).not.toThrow();
    // e.g. an image's Env (hostile content) that reaches the plan without a bundle's checks
    expect(() => exec('sh', ['sh'], ['A=1', 'B=x\u0000y'])).toThrow(/^process\.env\[1\]: contains a NUL byte/);
  });
});

describe('an engine\'s process.json (exec --process)', () => {
  it('is checked against the same schema, naming the file and the field', async () => {
    const { validateProcessShape } = await import('../../src/spec/bundle.js');
    const ok = { args: ['sh'], cwd: '/', user: { uid: 0, gid: 0 }, env: ['PATH=/bin'] };
    expect(validateProcessShape(ok, 'p.json').args).toEqual(['sh']);
    expect(() => validateProcessShape({ ...ok, env: 'PATH=/bin' }, 'p.json')).toThrow(/^p\.json: process\.env: must be array \(got "PATH=\/bin"\)$/);
    expect(() => validateProcessShape({ ...ok, user: { uid: '0', gid: 0 } }, 'p.json')).toThrow(/^p\.json: process\.user\.uid: must be integer/);
    expect(() => validateProcessShape({ ...ok, args: [] }, 'p.json')).toThrow(/^p\.json: process\.args: required/);
    expect(() => validateProcessShape({ ...ok, args: ['a\u0000b'] }, 'p.json')).toThrow(/^p\.json: process\.args\[0\]: contains a NUL byte/);
    expect(() => validateProcessShape(null, 'p.json')).toThrow(/^p\.json: process: must be object \(got null\)$/);
  });
});
