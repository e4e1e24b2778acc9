// The messages a learner meets (issue 13 item 5): each names the file, key or source it is
// about, and says what to do.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { configRlimitError, loadConfig, rlimitConfigKey } from '../../src/config/index.js';
import { applyDefaults } from '../../src/config/spec-defaults.js';
import { checkRlimits, nprocRootWarning, parseProcLimits } from '../../src/controls/rlimits.js';
import { SpecError } from '../../src/errors.js';
import { RegistryClient } from '../../src/image/registry.js';
import { parseReference } from '../../src/image/reference.js';
import { readLsms } from '../../src/runtime/host.js';
import { baseSpec } from './privileges-fixture.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tsrun-msg-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const LIMITS = 'Max processes             96365                96365                processes\nMax open files            20000                20000                files\n';

describe('config file messages', () => {
  it('a default-ulimits value the host cannot grant names the file and the key, with a value to use', () => {
    const path = join(dir, 'config.json');
    writeFileSync(path, JSON.stringify({ 'default-ulimits': { nofile: { Name: 'nofile', Soft: 64000, Hard: 64000 } } }));
    const loaded = loadConfig(path);
    const spec = baseSpec();
    applyDefaults(spec, loaded.config);
    let err: unknown;
    try {
      checkRlimits(spec, 0x000001fffeffffffn, { limits: parseProcLimits(LIMITS), nrOpen: 1048576n });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SpecError);
    const msg = (configRlimitError(err, spec, loaded, undefined) as Error).message;
    expect(msg).toBe(
      `${path}: "default-ulimits.nofile": RLIMIT_NOFILE hard 64000 is above tsrun's own hard limit 20000, and raising a hard limit needs CAP_SYS_RESOURCE, ` +
        'which tsrun lacks here (CapEff 000001fffeffffff): setrlimit would fail with EPERM. Use at most 20000, e.g. "nofile": {"Name": "nofile", "Soft": 20000, "Hard": 20000}',
    );
    // the same limit given by --ulimit stays the flag's error
    expect(configRlimitError(err, spec, loaded, ['nofile=64000'])).toBe(err);
    expect(rlimitConfigKey(loaded.config, 'RLIMIT_NOFILE', undefined)).toBe('default-ulimits.nofile');
    expect(rlimitConfigKey(loaded.config, 'RLIMIT_NPROC', undefined)).toBeUndefined();
  });

  it('"live-restore": false says it has no effect without a daemon; true says nothing', () => {
    const off = join(dir, 'off.json');
    writeFileSync(off, '{"live-restore": false}');
    expect(loadConfig(off).warnings).toEqual([`${off}: "live-restore": false has no effect: tsrun has no daemon, and every container outlives the tsrun that started it (held by its own tsrun-monitor or the kernel)`]);
    const on = join(dir, 'on.json');
    writeFileSync(on, '{"live-restore": true}');
    expect(loadConfig(on).warnings).toEqual([]);
  });

  it('selinux-enabled on a host without SELinux names the LSMs and where they were read', () => {
    const p = join(dir, 'c.json');
    writeFileSync(p, '{"selinux-enabled": true}');
    expect(loadConfig(p, {}, { lsms: ['capability', 'landlock'], lsmSource: '/sys/kernel/security/lsm' }).warnings[0]).toMatch(
      /SELinux is not active on this host \(LSMs: capability, landlock, from \/sys\/kernel\/security\/lsm\)/,
    );
  });
});

describe('nproc for root', () => {
  it('warns that root is exempt, naming where the limit came from; not for another user or a remapped root', () => {
    const spec = baseSpec();
    spec.process.rlimits = [{ type: 'RLIMIT_NPROC', soft: 10, hard: 20 }];
    expect(nprocRootWarning(spec, '/etc/tsrun/config.json: "default-ulimits.nproc"')).toMatch(
      /^\/etc\/tsrun\/config.json: "default-ulimits.nproc": RLIMIT_NPROC does not limit this container: it runs as root \(uid 0 of the host\), which fork\(2\) exempts/,
    );
    spec.process.user.uid = 4242;
    expect(nprocRootWarning(spec, '--ulimit nproc')).toBeUndefined();
    spec.process.user.uid = 0;
    spec.linux.namespaces.push({ type: 'user' });
    expect(nprocRootWarning(spec, '--ulimit nproc')).toBeUndefined();
  });
});

describe('the LSM list', () => {
  it('comes from securityfs when mounted', () => {
    expect(readLsms({ lsm: 'lockdown,capability,landlock,bpf', cmdline: '', config: () => '' })).toEqual({ lsms: ['lockdown', 'capability', 'landlock', 'bpf'], source: '/sys/kernel/security/lsm' });
  });
  it('else from lsm= on the kernel command line, saying so', () => {
    const r = readLsms({ lsm: '', cmdline: 'quiet lsm=landlock,selinux', config: () => '' });
    expect(r.lsms).toEqual(['capability', 'landlock', 'selinux']);
    expect(r.source).toMatch(/^the kernel command line \(lsm=\), as securityfs is not mounted/);
  });
  it('else from the build config: CONFIG_LSM restricted to the modules built in (this machine\'s config)', () => {
    const config = 'CONFIG_SECURITY_SELINUX=y\nCONFIG_SECURITY_LANDLOCK=y\nCONFIG_SECURITY_LOCKDOWN_LSM=y\nCONFIG_BPF_LSM=y\nCONFIG_LSM="landlock,lockdown,loadpin,safesetid,integrity,smack,tomoyo,apparmor,bpf"\n';
    const r = readLsms({ lsm: '', cmdline: 'quiet', config: () => config });
    expect(r.lsms).toEqual(['capability', 'landlock', 'lockdown', 'bpf']);
    expect(r.source).toMatch(/build config/);
  });
  it('else says it does not know, and how to mount securityfs', () => {
    expect(readLsms({ lsm: '', cmdline: '', config: () => '' }).source).toMatch(/^unknown: securityfs is not mounted \(mount -t securityfs/);
  });
});

describe('a pull that cannot reach the registry', () => {
  it('suggests tsrun import', async () => {
    // a loopback port just freed: nothing listens, the connection is refused at once
    const srv = createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as AddressInfo).port;
    await new Promise((r) => srv.close(r));
    const c = new RegistryClient(parseReference(`127.0.0.1:${port}/lib/x:1`), { insecure: [`127.0.0.1:${port}`] });
    await expect(c.manifest('1')).rejects.toThrow(/cannot reach 127\.0\.0\.1:\d+: .*ECONNREFUSED.*; offline\? load the image from a file instead: tsrun import FILE \[NAME\]/);
  });
});
