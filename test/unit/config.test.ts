import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { applyConfigDefaults, configPath, loadConfig, validateConfig } from '../../src/config/index.js';
import { idDbUnder } from '../../src/controls/userns.js';
import { mkdirSync } from 'node:fs';
import { baseSpec } from './privileges-fixture.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tsrun-config-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

// The workshop's daemon.json (lab 8), with limits this host can grant.
const LAB = {
  'selinux-enabled': true,
  'live-restore': true,
  'no-new-privileges': true,
  'userns-remap': 'alice',
  'default-ulimits': {
    nofile: { Name: 'nofile', Hard: 20000, Soft: 20000 },
    nproc: { Name: 'nproc', Hard: 200, Soft: 100 },
  },
};

describe('config file', () => {
  it('path: --config, then TSRUN_CONFIG, then /etc/tsrun/config.json', () => {
    expect(configPath('/a', { TSRUN_CONFIG: '/b' })).toEqual({ path: '/a', explicit: true });
    expect(configPath(undefined, { TSRUN_CONFIG: '/b' })).toEqual({ path: '/b', explicit: true });
    expect(configPath(undefined, {})).toEqual({ path: '/etc/tsrun/config.json', explicit: false });
  });

  it('a missing default file means no defaults; a missing explicit file is an error', () => {
    const d = loadConfig(undefined, {});
    expect(d.path).toBe('/etc/tsrun/config.json');
    if (!existsSync(d.path)) expect(d).toMatchObject({ found: false, config: {}, warnings: [] });
    expect(() => loadConfig(join(dir, 'nope.json'), {})).toThrow(/config file .*nope\.json: ENOENT/);
  });

  it('loads the workshop\'s daemon.json and warns that SELinux is not active', () => {
    const p = join(dir, 'c.json');
    writeFileSync(p, JSON.stringify(LAB));
    const c = loadConfig(undefined, { TSRUN_CONFIG: p }, { lsms: ['capability', 'landlock'] });
    expect(c.found).toBe(true);
    expect(c.config['default-ulimits']!.nproc).toEqual({ Name: 'nproc', Soft: 100, Hard: 200 });
    expect(c.warnings).toEqual([expect.stringMatching(/"selinux-enabled": SELinux is not active on this host \(LSMs: capability, landlock\)/)]);
  });

  it('rejects unknown keys and bad values, naming the key', () => {
    const v = (o: unknown) => () => validateConfig(o, '/etc/tsrun/config.json');
    expect(v({ 'userns-remmap': 'default' })).toThrow(/\/etc\/tsrun\/config\.json: "userns-remmap": unknown key/);
    expect(v({ 'no-new-privileges': 'yes' })).toThrow(/"no-new-privileges": expected true or false, got "yes"/);
    expect(v({ 'userns-remap': 'a:b:c' })).toThrow(/"userns-remap": expected "default" or "USER\[:GROUP\]"/);
    expect(v({ 'default-ulimits': { nofile: { Name: 'nproc', Soft: 1, Hard: 1 } } })).toThrow(/"default-ulimits\.nofile\.Name": "nproc" differs/);
    expect(v({ 'default-ulimits': { nofile: { Name: 'nofile', Soft: 10, Hard: 5 } } })).toThrow(/"default-ulimits\.nofile": soft limit 10 is above the hard limit 5/);
    expect(v({ 'default-ulimits': { nofiles: { Soft: 1, Hard: 1 } } })).toThrow(/"default-ulimits\.nofiles": unknown limit "nofiles"/);
    expect(v({ 'default-ulimits': { nofile: { Name: 'nofile', Soft: '1', Hard: 1 } } })).toThrow(/"default-ulimits\.nofile\.Soft": expected an integer/);
    expect(v({ 'default-ulimits': { nofile: { Name: 'nofile', Soft: 1, Hard: 1, Max: 2 } } })).toThrow(/"default-ulimits\.nofile\.Max": unknown key/);
    expect(v({ 'seccomp-profile': 'relative.json' })).toThrow(/"seccomp-profile": expected an absolute path/);
    expect(v({ 'seccomp-profile': join(dir, 'missing.json') })).toThrow(/"seccomp-profile": .*ENOENT/);
    expect(v([])).toThrow(/expected a JSON object/);
    const p = join(dir, 'bad.json');
    writeFileSync(p, '{"no-new-privileges": tru');
    expect(() => loadConfig(p, {})).toThrow(/config file .*bad\.json: invalid JSON/);
  });

  it('applies defaults that flags can then override', () => {
    mkdirSync(join(dir, 'etc'));
    writeFileSync(join(dir, 'etc/passwd'), 'alice:x:1000:1000::/:/bin/sh\n');
    writeFileSync(join(dir, 'etc/group'), 'alice:x:1000:\n');
    writeFileSync(join(dir, 'etc/subuid'), 'alice:100000:65536\n');
    writeFileSync(join(dir, 'etc/subgid'), 'alice:100000:65536\n');
    const s = baseSpec();
    applyConfigDefaults(s, validateConfig(LAB, 'x'), idDbUnder(dir));
    expect(s.process.noNewPrivileges).toBe(true);
    expect(s.process.rlimits).toEqual([
      { type: 'RLIMIT_NOFILE', soft: 20000, hard: 20000 },
      { type: 'RLIMIT_NPROC', soft: 100, hard: 200 },
    ]);
    expect(s.linux.namespaces.some((n) => n.type === 'user')).toBe(true);
    expect(s.linux.uidMappings).toEqual([{ containerID: 0, hostID: 100000, size: 65536 }]);
  });

  it('a remap user without ranges is an error naming the config key', () => {
    mkdirSync(join(dir, 'etc'));
    writeFileSync(join(dir, 'etc/passwd'), 'alice:x:1000:1000::/:/bin/sh\n');
    writeFileSync(join(dir, 'etc/group'), 'alice:x:1000:\n');
    expect(() => applyConfigDefaults(baseSpec(), { 'userns-remap': 'alice' }, idDbUnder(dir))).toThrow(/config "userns-remap": .*no subordinate ids for "alice"/);
  });
});

describe('registry keys (issue 16.1)', () => {
  it('"registry-mirrors" and "insecure-registries" take daemon.json\'s shapes; errors name the file and key', () => {
    expect(validateConfig({ 'registry-mirrors': ['http://127.0.0.1:5000/', 'https://mirror.example'], 'insecure-registries': ['10.0.0.5:5000', '192.168.0.0/16', 'reg.lan', '[fd00::1]:5000'] }, '/c.json')).toEqual({
      'registry-mirrors': ['http://127.0.0.1:5000', 'https://mirror.example'],
      'insecure-registries': ['10.0.0.5:5000', '192.168.0.0/16', 'reg.lan', '[fd00::1]:5000'],
    });
    expect(() => validateConfig({ 'registry-mirrors': 'http://x' }, '/c.json')).toThrow(/^\/c\.json: "registry-mirrors": expected a list of URLs/);
    expect(() => validateConfig({ 'registry-mirrors': ['ftp://x'] }, '/c.json')).toThrow('/c.json: "registry-mirrors[0]": "ftp://x": the scheme must be http or https');
    expect(() => validateConfig({ 'registry-mirrors': ['https://x/v2/'] }, '/c.json')).toThrow(/"registry-mirrors\[0\]": .*only scheme:\/\/host\[:port\]/);
    expect(() => validateConfig({ 'registry-mirrors': ['https://u:p@x'] }, '/c.json')).toThrow(/"registry-mirrors\[0\]"/);
    expect(() => validateConfig({ 'registry-mirrors': ['not a url'] }, '/c.json')).toThrow(/"registry-mirrors\[0\]": expected a URL/);
    expect(() => validateConfig({ 'insecure-registries': ['http://x:5000'] }, '/c.json')).toThrow('/c.json: "insecure-registries[0]": "http://x:5000": no scheme, only host[:port] or a CIDR (as docker\'s)');
    expect(() => validateConfig({ 'insecure-registries': ['10.0.0.0/33'] }, '/c.json')).toThrow(/"insecure-registries\[0\]": "10\.0\.0\.0\/33": not a CIDR/);
    expect(() => validateConfig({ 'insecure-registries': ['a b'] }, '/c.json')).toThrow(/"insecure-registries\[0\]"/);
    expect(() => validateConfig({ 'insecure-registries': [5] }, '/c.json')).toThrow(/"insecure-registries\[0\]": expected "host\[:port\]" or a CIDR, got 5/);
  });
});
