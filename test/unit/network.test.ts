import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { broadcast, checkHostAddress, formatCidr, formatIp, overlaps, parseCidr, parseIp, pickSubnet } from '../../src/network/ipv4.js';
import { checkRequestedIp, defineNetwork, ICC_OPTION, type Taken } from '../../src/network/define.js';
import { cniConfig, ipamDirOf, NETWORK_ANNOTATION, type NetworkAttachment, type NetworkDef } from '../../src/network/types.js';
import { findCniDir, runCniAction, runNamesAction, addedFor } from '../../src/network/cni.js';
import { joinNames, leaveNames } from '../../src/network/names.js';
import { resolveAttachment } from '../../src/network/attach.js';
import { hostRoutes, saveNetwork, allocations } from '../../src/network/store.js';
import { validateConfig } from '../../src/config/index.js';
import { buildPlan } from '../../src/plan/build.js';
import { renderPlan } from '../../src/plan/render.js';
import type { BuildContext, ParentStep } from '../../src/plan/types.js';
import { specFromFlags, type RunOptions } from '../../src/spec/from-flags.js';
import { RUN_FLAGS } from '../../src/cli/flags.js';
import { SpecError, UnsupportedError, UsageError } from '../../src/errors.js';
import { etcFileContent } from '../../src/controls/etc-files.js';

const none: Taken = { networks: [], hostRoutes: [] };
const def = (name: string, f: Parameters<typeof defineNetwork>[1] = {}, taken = none, defaultIcc = true) =>
  defineNetwork(name, f, taken, { id: 'ab'.repeat(32), now: '2026-01-01T00:00:00.000Z', defaultIcc });

describe('IPv4 addresses and subnets', () => {
  it('parses dotted quads and refuses what inet_aton would read differently', () => {
    expect(parseIp('10.1.2.3')).toBe(0x0a010203);
    expect(formatIp(0xc0a80101)).toBe('192.168.1.1');
    for (const bad of ['10.1.2', '10.1.2.3.4', '256.1.1.1', '10.01.2.3', '1e1.1.1.1', '', ' 10.1.2.3']) expect(parseIp(bad)).toBeUndefined();
  });

  it('parses CIDRs with the problem named', () => {
    expect(formatCidr(parseCidr('10.77.3.0/24'))).toBe('10.77.3.0/24');
    expect(() => parseCidr('10.77.3.1/24')).toThrow(/host bits set: the subnet is 10.77.3.0\/24/);
    expect(() => parseCidr('10.77.3.0')).toThrow(/not a CIDR/);
    expect(() => parseCidr('10.77.3.0/31')).toThrow(/\/8 to \/30/);
    expect(() => parseCidr('fd00::/64')).toThrow(/only IPv4/);
  });

  it('knows network, broadcast, containment and overlap', () => {
    const n = parseCidr('10.77.3.0/24');
    expect(formatIp(broadcast(n))).toBe('10.77.3.255');
    expect(checkHostAddress(n, parseIp('10.77.3.7')!)).toBeUndefined();
    expect(checkHostAddress(n, parseIp('10.77.3.0')!)).toMatch(/network address/);
    expect(checkHostAddress(n, parseIp('10.77.3.255')!)).toMatch(/broadcast address/);
    expect(checkHostAddress(n, parseIp('10.77.4.1')!)).toMatch(/outside the subnet/);
    expect(overlaps(n, parseCidr('10.77.0.0/16'))).toBe(true);
    expect(overlaps(n, parseCidr('10.77.4.0/24'))).toBe(false);
  });

  it('picks the first free /24 of 10.77.0.0/16', () => {
    expect(formatCidr(pickSubnet([])!)).toBe('10.77.0.0/24');
    expect(formatCidr(pickSubnet([parseCidr('10.77.0.0/23')])!)).toBe('10.77.2.0/24');
    expect(pickSubnet([parseCidr('10.0.0.0/8')])).toBeUndefined();
  });

  it('reads the host\'s routed subnets from /proc/net/route, skipping the default route', () => {
    const text = [
      'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT',
      'eth0\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0',
      'eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0',
    ].join('\n');
    expect(hostRoutes(text).map((r) => [formatCidr(r.subnet), r.dev])).toEqual([['192.168.0.0/24', 'eth0']]);
  });
});

describe('network create flags → definition', () => {
  it('defaults: a free /24, gateway .1, icc on, bridge named from the id', () => {
    expect(def('n')).toEqual({
      name: 'n',
      id: 'ab'.repeat(32),
      driver: 'bridge',
      subnet: '10.77.0.0/24',
      gateway: '10.77.0.1',
      bridge: 'tsbr-ababababab',
      icc: true,
      internal: false,
      options: {},
      created: '2026-01-01T00:00:00.000Z',
    });
    expect(def('n').bridge.length).toBeLessThanOrEqual(15); // IFNAMSIZ - 1
  });

  it('takes icc=false from -o (docker\'s option), --icc, or the config default; the flag wins', () => {
    expect(def('n', { opt: [`${ICC_OPTION}=false`] })).toMatchObject({ icc: false, options: { [ICC_OPTION]: 'false' } });
    expect(def('n', { icc: 'false' }).icc).toBe(false);
    expect(def('n', {}, none, false)).toMatchObject({ icc: false, options: { [ICC_OPTION]: 'false' } });
    expect(def('n', { icc: 'true' }, none, false).icc).toBe(true);
    expect(() => def('n', { icc: 'no' })).toThrow(/--icc: expected true or false/);
    expect(() => def('n', { opt: ['com.docker.network.bridge.name=x'] })).toThrow(/--opt "com.docker.network.bridge.name": not supported/);
    expect(() => def('n', { opt: ['novalue'] })).toThrow(/expected KEY=VALUE/);
  });

  it('validates subnet, gateway, name and driver, naming the flag', () => {
    expect(def('n', { subnet: '192.168.50.0/24', gateway: '192.168.50.254' })).toMatchObject({ subnet: '192.168.50.0/24', gateway: '192.168.50.254' });
    expect(() => def('n', { subnet: '192.168.50.1/24' })).toThrow(/^--subnet 192.168.50.1\/24: .*host bits/);
    expect(() => def('n', { subnet: '192.168.50.0/24', gateway: '192.168.51.1' })).toThrow(/--gateway 192.168.51.1: .*outside the subnet/);
    expect(() => def('n', { subnet: '192.168.50.0/24', gateway: '192.168.50.255' })).toThrow(/broadcast/);
    expect(() => def('n', { gateway: 'x' })).toThrow(/--gateway "x": not an IPv4 address/);
    expect(() => def('bad name')).toThrow(UsageError);
    for (const r of ['none', 'host', 'bridge']) expect(() => def(r)).toThrow(/reserved/);
    expect(() => def('n', { driver: 'macvlan' })).toThrow(/--driver "macvlan"/);
  });

  it('refuses overlaps with other networks and the host\'s routes, and picks around them', () => {
    const other = def('a');
    const taken: Taken = { networks: [other], hostRoutes: [{ subnet: parseCidr('10.77.1.0/24'), dev: 'eth0' }] };
    expect(def('b', {}, taken).subnet).toBe('10.77.2.0/24');
    expect(() => def('b', { subnet: '10.77.0.0/16' }, taken)).toThrow(/overlaps network a \(10.77.0.0\/24\)/);
    expect(() => def('b', { subnet: '10.77.1.128/25' }, taken)).toThrow(/routed by the host on eth0/);
    expect(() => def('a', {}, taken)).toThrow(/network a already exists/);
  });

  it('checks --ip against the network', () => {
    const n = def('n');
    expect(() => checkRequestedIp(n, '10.77.0.9')).not.toThrow();
    expect(() => checkRequestedIp(n, '10.77.0.1')).toThrow(/gateway of network n/);
    expect(() => checkRequestedIp(n, '10.77.1.9')).toThrow(/--ip 10.77.1.9: .*outside the subnet 10.77.0.0\/24/);
    expect(() => checkRequestedIp(n, '10.77.0.0')).toThrow(/network address/);
    expect(() => checkRequestedIp(n, 'ten')).toThrow(/--ip "ten": not an IPv4 address/);
  });

  it('accepts "icc" in the config file as a boolean only', () => {
    expect(validateConfig({ icc: false }, '/c.json')).toEqual({ icc: false });
    expect(() => validateConfig({ icc: 'no' }, '/c.json')).toThrow(/"icc": expected true or false/);
  });
});

describe('CNI configuration', () => {
  const n: NetworkDef = def('n', { icc: 'false' });
  it('--internal: a bridge + host-local config without gateway mode, NAT or routes', () => {
    expect(cniConfig({ def: { ...n, internal: true }, ipamDir: '/d/networks/ipam' })).toMatchObject({ isGateway: false, ipMasq: false });
  });
  it('otherwise the bridge is the default route (NAT is the network\'s own rule, not the plugin\'s per container)', () => {
    expect(cniConfig({ def: n, ipamDir: '/d/networks/ipam' })).toEqual({
      cniVersion: '1.0.0',
      name: 'n',
      type: 'bridge',
      bridge: 'tsbr-ababababab',
      isGateway: true,
      isDefaultGateway: true,
      ipMasq: false,
      hairpinMode: true,
      ipam: { type: 'host-local', ranges: [[{ subnet: '10.77.0.0/24', gateway: '10.77.0.1' }]], dataDir: '/d/networks/ipam' },
    });
  });
  it('asks host-local for a fixed address through args.cni.ips', () => {
    expect(cniConfig({ def: n, ipamDir: '/d', ip: '10.77.0.9' }).args).toEqual({ cni: { ips: ['10.77.0.9'] } });
  });
});

function ctxFor(opts: RunOptions, network?: NetworkAttachment): BuildContext {
  const spec = specFromFlags({
    id: 'c'.repeat(64),
    image: { name: 'busybox', config: { Cmd: ['sh'] } },
    args: [],
    opts,
    rootfs: '/var/lib/tsrun/containers/x/merged',
    containerDir: '/var/lib/tsrun/containers/x',
    env: { readImageFile: () => undefined, ncpu: 2 },
    flags: RUN_FLAGS,
  });
  return { id: 'c'.repeat(64), spec, rootfs: spec.root.path, containerDir: '/var/lib/tsrun/containers/x', host: { capEff: 0n, lsms: [], ncpu: 2 }, terminal: false, waitStart: false, ...(network ? { network } : {}) };
}

describe('run --network NAME → spec → plan', () => {
  const attach = (icc: boolean, ip?: string): NetworkAttachment => ({ def: def('n', { icc: String(icc) }), cniPath: '/usr/lib/cni', ipamDir: '/var/lib/tsrun/networks/ipam', hostnames: ['cccccccccccc', 'web'], ...(ip ? { ip } : {}) });

  it('gives the container its own network namespace and records the network', () => {
    const s = ctxFor({ network: 'n' }).spec;
    expect(s.linux.namespaces.some((x) => x.type === 'network' && !x.path)).toBe(true);
    expect(s.annotations?.[NETWORK_ANNOTATION]).toBe('n');
    expect(ctxFor({}).spec.annotations?.[NETWORK_ANNOTATION]).toBeUndefined();
  });

  it('refuses names that are not networks and --ip without one', () => {
    expect(() => ctxFor({ network: 'bridge' })).toThrow(UnsupportedError);
    expect(() => ctxFor({ network: 'container:abc' })).toThrow(/joining another container/);
    expect(() => ctxFor({ network: 'bad name' })).toThrow(/--network "bad name": not a network name/);
    expect(() => ctxFor({ network: 'host', ip: '10.77.0.5' })).toThrow(/--ip 10.77.0.5: needs --network NAME/);
    expect(() => ctxFor({ ip: '10.77.0.5' })).toThrow(/not --network none/);
  });

  it('plans: bridge in prepare, CNI ADD after the clone and before GO, isolation only with icc=false, DEL in cleanup', () => {
    const plan = buildPlan(ctxFor({ network: 'n' }, attach(false, '10.77.0.9')));
    const net = plan.steps.filter((s): s is ParentStep => s.control === 'network') as ParentStep[];
    expect(net.map((s) => [s.phase, s.action, 'command' in s ? s.command : ''])).toEqual([
      ['prepare', 'network-bridge', ''],
      ['after-clone', 'cni', 'ADD'],
      ['after-clone', 'bridge-port', ''],
      ['after-clone', 'network-names', 'join'],
      ['cleanup', 'network-names', 'leave'],
      ['cleanup', 'cni', 'DEL'],
    ]);
    const add = net[1] as Extract<ParentStep, { action: 'cni' }>;
    expect(add).toMatchObject({ plugin: 'bridge', cniPath: '/usr/lib/cni', ifname: 'eth0', containerId: 'c'.repeat(64) });
    expect(net[3]).toMatchObject({ netDir: '/var/lib/tsrun/networks', network: 'n', hostsFile: '/var/lib/tsrun/containers/x/hosts', names: ['cccccccccccc', 'web'] });
    expect(add.config).toEqual(cniConfig(attach(false, '10.77.0.9')));
    // ADD and isolation come after the clone step, before the cgroup/GO steps end the phase
    const idx = (p: (s: (typeof plan.steps)[number]) => boolean) => plan.steps.findIndex(p);
    expect(idx((s) => s.where === 'parent' && s.action === 'clone')).toBeLessThan(idx((s) => s.where === 'parent' && s.action === 'cni'));
    expect(idx((s) => s.where === 'parent' && s.action === 'bridge-port')).toBeLessThan(idx((s) => s.where === 'child'));
    const text = renderPlan(plan);
    expect(text).toMatch(/CNI_COMMAND=ADD .*CNI_NETNS=\/proc\/<pid>\/ns\/net CNI_IFNAME=eth0/);
    expect(text).toMatch(/bridge link set dev <host-side veth of eth0> isolated on\n\s+network: icc=false/);
    expect(text).toMatch(/CNI_COMMAND=DEL .*no CNI_NETNS/);
    const plain = buildPlan(ctxFor({ network: 'n' }, attach(true)));
    expect(plain.steps.some((s) => s.where === 'parent' && s.action === 'bridge-port')).toBe(false);
    expect(buildPlan(ctxFor({})).steps.some((s) => s.control === 'network')).toBe(false);
  });

  it('refuses a network for a container that shares a network namespace', () => {
    const c = ctxFor({ network: 'host' });
    expect(() => buildPlan({ ...c, network: attach(true) })).toThrow(SpecError);
  });

  it('leaves the hostname\'s /etc/hosts line to the network (its address), not 127.0.1.1', () => {
    expect(etcFileContent('hosts', 'h', '', false)).toMatch(/127\.0\.1\.1\th/);
    expect(etcFileContent('hosts', 'h', '', false, true)).not.toMatch(/127\.0\.1\.1/);
  });
});

describe('resolving an attachment and calling a plugin (fake plugins, no root)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tsrun-net-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const data = join(dir, 'data');
  const cni = join(dir, 'cni');
  mkdirSync(cni, { recursive: true });
  const log = join(dir, 'calls');
  // a stand-in for the bridge plugin: records its environment and stdin, answers like the real one
  writeFileSync(
    join(cni, 'bridge'),
    `#!/bin/sh\n{ env | grep '^CNI_' | sort; echo STDIN; cat; echo; echo END; } >> ${log}\n` +
      `[ "$CNI_COMMAND" = ADD ] && echo '{"cniVersion":"1.0.0","interfaces":[{"name":"tsbr-ababababab"},{"name":"veth1234"},{"name":"eth0","sandbox":"'$CNI_NETNS'"}],"ips":[{"interface":2,"address":"10.77.0.9/24","gateway":"10.77.0.1"}]}'\nexit 0\n`,
  );
  writeFileSync(join(cni, 'host-local'), '#!/bin/sh\nexit 0\n');
  chmodSync(join(cni, 'bridge'), 0o755);
  chmodSync(join(cni, 'host-local'), 0o755);
  const n = def('n');

  it('names an unknown network and lists the existing ones', () => {
    expect(() => resolveAttachment(data, 'n', undefined, [], { TSRUN_CNI_PATH: cni })).toThrow(/--network n: no such network \(there are none/);
    saveNetwork(data, n);
    saveNetwork(data, def('other', { subnet: '10.77.5.0/24' }));
    expect(() => resolveAttachment(data, 'x', undefined, [], { TSRUN_CNI_PATH: cni })).toThrow(/no such network \(networks: n, other; or none, host\)/);
  });

  it('refuses a missing plugin and an address host-local has given to another container', () => {
    expect(() => resolveAttachment(data, 'n', undefined, [], { TSRUN_CNI_PATH: join(dir, 'nope') })).toThrow(/CNI plugin bridge, host-local not found in .*nope \(ENOENT\): install package containernetworking-plugins/);
    mkdirSync(join(ipamDirOf(data), 'n'), { recursive: true });
    writeFileSync(join(ipamDirOf(data), 'n', '10.77.0.9'), 'f00dcafe0000aaaa\r\neth0');
    writeFileSync(join(ipamDirOf(data), 'n', 'last_reserved_ip.0'), '10.77.0.9');
    expect(allocations(data, 'n')).toEqual([{ ip: '10.77.0.9', containerId: 'f00dcafe0000aaaa', ifname: 'eth0' }]);
    expect(() => resolveAttachment(data, 'n', '10.77.0.9', [], { TSRUN_CNI_PATH: cni })).toThrow(/--ip 10.77.0.9: already in use on network n by container f00dcafe0000/);
    const a = resolveAttachment(data, 'n', '10.77.0.10', ['h', 'h', '', 'web'], { TSRUN_CNI_PATH: `/nonexistent:${cni}` });
    expect(a).toMatchObject({ cniPath: cni, ip: '10.77.0.10', hostnames: ['h', 'web'], ipamDir: ipamDirOf(data) });
    expect(findCniDir(`${cni}:/usr/lib/cni`, ['bridge'])).toBe(cni);
  });

  it('ADD: CNI_* variables and the config on stdin, the address in the members\' /etc/hosts; DEL: no CNI_NETNS', () => {
    const hosts = join(dir, 'hosts');
    writeFileSync(hosts, '127.0.0.1\tlocalhost\n');
    const config = cniConfig({ def: n, ipamDir: ipamDirOf(data) });
    const common = { plugin: 'bridge', cniPath: cni, containerId: 'c'.repeat(64), ifname: 'eth0', config };
    runCniAction({ action: 'cni', command: 'ADD', ...common }, 4242);
    expect(addedFor('c'.repeat(64))).toMatchObject({ hostVeth: 'veth1234', ip: '10.77.0.9' });
    const netDir = join(data, 'networks');
    runNamesAction({ action: 'network-names', command: 'join', netDir, network: 'n', containerId: 'c'.repeat(64), hostsFile: hosts, names: ['cccc', 'web'] });
    expect(readFileSync(hosts, 'utf8')).toBe('127.0.0.1\tlocalhost\n# network n: its members, kept current by tsrun\n10.77.0.9\tcccc web\n');
    // a second member: both lists have both; the first leaving is forgotten by the second
    const hosts2 = join(dir, 'hosts2');
    writeFileSync(hosts2, '127.0.0.1\tlocalhost\n# network n: its members, kept current by tsrun\nstale line\n');
    joinNames(netDir, 'n', { containerId: 'd'.repeat(64), ip: '10.77.0.10', names: ['dddd', 'db', 'db'], hostsFile: hosts2 });
    expect(readFileSync(hosts, 'utf8')).toBe('127.0.0.1\tlocalhost\n# network n: its members, kept current by tsrun\n10.77.0.9\tcccc web\n10.77.0.10\tdddd db\n');
    expect(readFileSync(hosts2, 'utf8')).toBe(readFileSync(hosts, 'utf8'));
    runNamesAction({ action: 'network-names', command: 'leave', netDir, network: 'n', containerId: 'c'.repeat(64) });
    expect(readFileSync(hosts2, 'utf8')).toBe('127.0.0.1\tlocalhost\n# network n: its members, kept current by tsrun\n10.77.0.10\tdddd db\n');
    leaveNames(netDir, 'n', 'd'.repeat(64));
    runCniAction({ action: 'cni', command: 'DEL', ...common });
    expect(addedFor('c'.repeat(64))).toBeUndefined();
    const calls = readFileSync(log, 'utf8').split('END\n').filter(Boolean);
    expect(calls[0]).toContain(`CNI_COMMAND=ADD\nCNI_CONTAINERID=${'c'.repeat(64)}\nCNI_IFNAME=eth0\nCNI_NETNS=/proc/4242/ns/net\nCNI_PATH=${cni}\n`);
    expect(JSON.parse(calls[0]!.split('STDIN\n')[1]!)).toEqual(config);
    expect(calls[1]).toContain('CNI_COMMAND=DEL');
    expect(calls[1]).not.toContain('CNI_NETNS');
    // the network (and host-local's directory with it) was removed since: nothing to release
    runCniAction({ action: 'cni', command: 'DEL', ...common, config: cniConfig({ def: n, ipamDir: join(dir, 'gone') }) });
    expect(readFileSync(log, 'utf8').split('END\n').filter(Boolean)).toHaveLength(2);
  });

  it('turns a CNI error object into one line naming the network, plugin and code', () => {
    writeFileSync(join(cni, 'bridge'), `#!/bin/sh\ncat >/dev/null\necho '{"cniVersion":"1.0.0","code":11,"msg":"failed to allocate","details":"range full"}'\nexit 1\n`);
    const config = cniConfig({ def: n, ipamDir: ipamDirOf(data) });
    expect(() => runCniAction({ action: 'cni', command: 'ADD', plugin: 'bridge', cniPath: cni, containerId: 'd', ifname: 'eth0', config }, 1)).toThrow(
      /^network n: CNI ADD \(bridge\): failed to allocate: range full \(CNI error code 11\)$/,
    );
  });
});
