import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RUN_FLAGS } from '../../src/cli/flags.js';
import type { TsrunConfig } from '../../src/config/index.js';
import { applyDefaults } from '../../src/config/spec-defaults.js';
import { setPrivilegedHooks } from '../../src/controls/privileged.js';
import type { ImageConfig } from '../../src/image/types.js';
import { renderSummary, summarize, type SummaryRow } from '../../src/plan/summary.js';
import { specFromFlags, type RunOptions } from '../../src/spec/from-flags.js';

const PASSWD = 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n';
const GROUP = 'root:x:0:\napp:x:1000:\n';

function rows(opts: RunOptions, config: TsrunConfig = {}, image: ImageConfig = { Cmd: ['sh'] }): Record<string, SummaryRow> {
  const spec = specFromFlags({
    id: 'a'.repeat(64),
    image: { name: 'busybox', config: image },
    args: [],
    opts,
    rootfs: '/c/merged',
    containerDir: '/c',
    env: { readImageFile: (p) => (p === '/etc/passwd' ? PASSWD : p === '/etc/group' ? GROUP : undefined), ncpu: 2 },
    flags: RUN_FLAGS,
    beforeFlags: (s) => applyDefaults(s, config),
  });
  return Object.fromEntries(summarize({ spec, opts, config, lsms: ['capability', 'landlock'] }).map((r) => [r.control, r]));
}

const brief = (r: SummaryRow | undefined) => r && `${r.on ? 'on' : 'off'} ${r.value} [${r.source}]`;

describe('explain --summary', () => {
  beforeAll(() => setPrivilegedHooks({ warn: () => {}, devices: () => [] }));
  afterAll(() => setPrivilegedHooks({}));

  it('defaults: every control is listed, the ones that are off included, each with its CIS ids and kernel file', () => {
    const r = rows({});
    expect(brief(r['pids limit'])).toBe('off max [default]');
    expect(brief(r['memory'])).toBe('off unlimited [default]');
    expect(brief(r['no_new_privs'])).toBe('off not set [default]');
    expect(brief(r['read-only rootfs'])).toBe('off rw [default]');
    expect(brief(r['userns'])).toBe('off host user namespace: root is host root [default]');
    expect(brief(r['privileged'])).toBe('off no [default]');
    expect(brief(r['AppArmor'])).toBe('off not active on this kernel [default]');
    expect(brief(r['host bind mounts'])).toBe('off none [default]');
    expect(r['seccomp']).toMatchObject({ on: true, source: 'default', ref: '5.21 (5.22), 2.15 (2.17)', kernel: '/proc/PID/status Seccomp, Seccomp_filters' });
    expect(r['capabilities']).toMatchObject({ on: true, value: "14 in the bounding set (docker's default)" });
    expect(r['pids limit']).toMatchObject({ ref: '5.28 (5.29)', kernel: "pids.max in /proc/PID/cgroup's cgroup" });
    expect(r['net namespace']).toMatchObject({ on: true, value: 'none', ref: '5.9 (5.10)' });
  });

  it('flags: value and source of each control they touch', () => {
    const r = rows({ pidsLimit: '50', memory: '64m', readOnly: true, securityOpt: ['no-new-privileges'], capDrop: ['NET_RAW'], network: 'host', ulimit: ['nofile=1024:2048'], volume: ['/tmp:/h'] });
    expect(brief(r['pids limit'])).toBe('on 50 [flag --pids-limit]');
    expect(brief(r['memory'])).toBe('on 67108864 bytes [flag --memory]');
    expect(brief(r['read-only rootfs'])).toBe('on ro [flag --read-only]');
    expect(brief(r['no_new_privs'])).toBe('on set [flag --security-opt no-new-privileges]');
    expect(brief(r['capabilities'])).toBe("on 13 in the bounding set: docker's default -NET_RAW [flag --cap-drop]");
    expect(brief(r['net namespace'])).toBe('off host [flag --network]');
    expect(brief(r['ulimits'])).toBe('on nofile=1024:2048 [flag --ulimit]');
    expect(brief(r['host bind mounts'])).toBe('on /tmp:/h [flag --volume]');
  });

  it('the config file is the source when no flag overrides it; a flag beats it', () => {
    const cfg: TsrunConfig = { 'no-new-privileges': true, 'default-ulimits': { nofile: { Name: 'nofile', Soft: 1000, Hard: 2000 } }, 'seccomp-profile': 'unconfined' };
    const r = rows({}, cfg);
    expect(brief(r['no_new_privs'])).toBe('on set [config no-new-privileges]');
    expect(brief(r['ulimits'])).toBe('on nofile=1000:2000 [config default-ulimits]');
    expect(brief(r['seccomp'])).toBe('off unconfined [config seccomp-profile]');
    expect(brief(rows({ securityOpt: ['no-new-privileges=false'] }, cfg)['no_new_privs'])).toBe('off not set [flag --security-opt no-new-privileges]');
  });

  it('the image is the source of its User; --privileged turns controls off and says so', () => {
    expect(brief(rows({}, {}, { Cmd: ['sh'], User: 'app' })['user'])).toBe('on uid 1000 gid 1000 [image User]');
    expect(brief(rows({ user: '1000' })['user'])).toBe('on uid 1000 gid 1000 [flag --user]');
    const p = rows({ privileged: true });
    expect(brief(p['privileged'])).toBe('on every capability, no seccomp, all devices, no masked paths [flag --privileged]');
    expect(brief(p['seccomp'])).toBe('off unconfined [flag --privileged]');
    expect(brief(p['capabilities'])?.startsWith('off 41 in the bounding set')).toBe(true);
    expect(brief(p['host devices'])).toBe('on every device (a *:* rwm) [flag --privileged]');
  });

  it('renders one aligned line per control', () => {
    const text = renderSummary(Object.values(rows({ pidsLimit: '50' })));
    expect(text).toMatch(/^on +pids limit +50 +flag --pids-limit +5\.28 \(5\.29\) +pids\.max in \/proc\/PID\/cgroup's cgroup$/m);
    expect(text).toMatch(/^off +no_new_privs +not set +default +5\.25 \(5\.26\), 2\.17 \(2\.14\) +\/proc\/PID\/status NoNewPrivs$/m);
  });
});
