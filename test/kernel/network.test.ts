import { existsSync, readdirSync, readFileSync, writeFileSync, mkdirSync, chmodSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeKernel, leaks, testEnv, tsrun, tsrunAsync } from './helpers.js';
import { execFileSync } from 'node:child_process';
import { until } from '../until.js';

// User-defined bridge networks on the real kernel: CNI bridge + host-local from
// /usr/lib/cni (package containernetworking-plugins), icc=false as bridge port isolation.
// Every address is on a bridge this file creates; nothing leaves the machine.

const tag = `t${process.pid.toString(36)}`;
const ON = `${tag}-on`;
const OFF = `${tag}-off`;
const SUBNET_ON = '10.77.201.0/24';
const SUBNET_OFF = '10.77.202.0/24';

const sysNet = () => readdirSync('/sys/class/net');
const veths = () => sysNet().filter((d) => existsSync(`/sys/class/net/${d}/brport`) || d.startsWith('veth'));
const runNetns = () => (existsSync('/run/netns') ? readdirSync('/run/netns') : []);

function inspect(name: string): { bridge: string; gateway: string; icc: boolean; containers: { id: string; name?: string; ip: string }[] } {
  const r = tsrun(['network', 'inspect', name]);
  expect(r.stderr).toBe('');
  return JSON.parse(r.stdout)[0];
}

/** Polls: a netns (and the veth pair in it) is torn down by a kernel worker after its last process exits. */

function ipamFiles(name: string): string[] {
  const d = join(testEnv().data, 'networks', 'ipam', name);
  return existsSync(d) ? readdirSync(d).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)) : [];
}

function detached(net: string, extra: string[] = []): string {
  const r = tsrun(['run', '-d', '--network', net, ...extra, 'busybox', 'sleep', '60']);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return r.stdout.trim();
}

describeKernel('bridge networks (CNI) and icc=false', () => {
  let vethsBefore: string[] = [];
  let netnsBefore: string[] = [];
  const started: string[] = [];

  beforeAll(() => {
    vethsBefore = veths();
    netnsBefore = runNetns();
    expect(tsrun(['network', 'create', '--subnet', SUBNET_ON, ON]).code).toBe(0);
    const off = tsrun(['network', 'create', '--subnet', SUBNET_OFF, '-o', 'com.docker.network.bridge.enable_icc=false', OFF]);
    expect(off.stderr).toBe('');
    expect(off.stdout).toMatch(/^[0-9a-f]{64}\n$/);
  });

  afterAll(async () => {
    for (const id of started) tsrun(['rm', '-f', id]);
    for (const n of [ON, OFF]) tsrun(['network', 'rm', n]);
  });

  it('create makes the bridge with the gateway address; ls lists both networks', () => {
    const on = inspect(ON);
    expect(on).toMatchObject({ gateway: '10.77.201.1', icc: true, containers: [] });
    expect(inspect(OFF).icc).toBe(false);
    expect(existsSync(`/sys/class/net/${on.bridge}/bridge`)).toBe(true);
    const ls = tsrun(['network', 'ls']).stdout;
    expect(ls).toMatch(new RegExp(`${ON}\\s+bridge\\s+10.77.201.0/24\\s+10.77.201.1\\s+true`));
    expect(ls).toMatch(new RegExp(`${OFF}\\s+bridge\\s+10.77.202.0/24\\s+10.77.202.1\\s+false`));
  });

  it('"icc": false in the config file is the default of new networks; --icc wins', () => {
    const cfg = join(testEnv().base, 'net-config.json');
    writeFileSync(cfg, JSON.stringify({ icc: false }));
    for (const [flags, icc] of [[[], false], [['--icc=true'], true]] as [string[], boolean][]) {
      const name = `${tag}-cfg`;
      const r = tsrun(['network', 'create', '--config', cfg, '--subnet', '10.77.204.0/24', ...flags, name]);
      expect(r.stderr).toBe('');
      expect(inspect(name).icc).toBe(icc);
      expect(tsrun(['network', 'rm', name]).code).toBe(0);
    }
  });

  it('icc=true: two containers reach each other; eth0 has the allocated address; /etc/hosts names it', () => {
    const a = detached(ON, ['--name', `${tag}-a`]);
    started.push(a);
    const net = inspect(ON);
    expect(net.containers).toEqual([{ id: a, name: `${tag}-a`, ip: expect.stringMatching(/^10\.77\.201\.\d+$/), ipv4Address: expect.stringMatching(/\/24$/) }]);
    const ipA = net.containers[0]!.ip;
    const settings = JSON.parse(tsrun(['inspect', `${tag}-a`]).stdout)[0].NetworkSettings;
    expect(settings).toEqual({ Networks: { [ON]: { NetworkID: expect.stringMatching(/^[0-9a-f]{64}$/), IPAddress: ipA, IPPrefixLen: 24, Gateway: '10.77.201.1' } }, Ports: {} });
    const r = tsrun(['run', '--rm', '--network', ON, '--ip', '10.77.201.77', '--hostname', 'bee', 'busybox', 'sh', '-c', `ip -4 -o addr show dev eth0; grep bee /etc/hosts; ip route; ping -c1 -W1 ${ipA} >/dev/null && echo reached`]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/eth0\s+inet 10\.77\.201\.77\/24 /);
    // hostname, the name run generated (docker's adjective_surname), short id
    expect(r.stdout).toMatch(/^10\.77\.201\.77\tbee [a-z]+_[a-z_]+[0-9]? [0-9a-f]{12}$/m);
    expect(r.stdout).toMatch(/^default via 10\.77\.201\.1 dev eth0/m); // not --internal: a route out (docs/networks.md)
    expect(r.stdout).toContain('reached\n');
  });

  it('icc=false: the same traffic is dropped by the bridge while the gateway answers', () => {
    const a = detached(OFF);
    started.push(a);
    const net = inspect(OFF);
    const ipA = net.containers.find((c) => c.id === a)!.ip;
    // the host side: every port of the bridge is isolated (bridge link show ... isolated on)
    const ports = readdirSync(`/sys/class/net/${net.bridge}/brif`);
    expect(ports).toHaveLength(1);
    expect(readFileSync(`/sys/class/net/${net.bridge}/brif/${ports[0]}/isolated`, 'utf8').trim()).toBe('1');
    const r = tsrun(['run', '--rm', '--network', OFF, 'busybox', 'sh', '-c', `ping -c1 -W1 ${ipA} >/dev/null; echo peer=$?; ping -c1 -W1 ${net.gateway} >/dev/null; echo gateway=$?`]);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('peer=1\ngateway=0\n');
  });

  it('after a container exits its veth is gone and its address is free again', async () => {
    const br = inspect(ON).bridge;
    const portsBefore = readdirSync(`/sys/class/net/${br}/brif`);
    const r = tsrun(['run', '--rm', '--network', ON, '--ip', '10.77.201.88', 'busybox', 'sh', '-c', 'ls /sys/class/net']);
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n')).toContain('eth0');
    expect(ipamFiles(ON)).not.toContain('10.77.201.88');
    await until(() => readdirSync(`/sys/class/net/${br}/brif`).length === portsBefore.length, 5000, 'the veth of the exited container left the bridge');
    // host-local would hand out the next address; asking for the same one shows it was released
    expect(tsrun(['run', '--rm', '--network', ON, '--ip', '10.77.201.88', 'busybox', 'true']).code).toBe(0);
    // a kept container (no --rm) gives its address back when it exits, as docker's stop
    const kept = tsrun(['run', '--name', `${tag}-kept`, '--network', ON, '--ip', '10.77.201.89', 'busybox', 'true']);
    started.push(`${tag}-kept`);
    expect(kept.code).toBe(0);
    expect(ipamFiles(ON)).not.toContain('10.77.201.89');
  });

  it('concurrent runs get distinct addresses (host-local\'s lock) and remake a deleted bridge once', async () => {
    const NET = `${tag}-cc`;
    expect(tsrun(['network', 'create', '--subnet', '10.77.203.0/24', NET]).code).toBe(0);
    const br = inspect(NET).bridge;
    try {
      // as after a reboot: the definition exists, the bridge does not
      execFileSync('ip', ['link', 'del', br]);
      const runs = Array.from({ length: 4 }, () => {
        const p = tsrunAsync(['run', '--rm', '--network', NET, 'busybox', 'ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0']);
        let out = '';
        p.stdout!.on('data', (c: Buffer) => (out += c.toString()));
        p.stderr!.on('data', (c: Buffer) => (out += c.toString()));
        return new Promise<string>((resolve) => p.on('close', (code) => resolve(`${code} ${out}`)));
      });
      const outs = await Promise.all(runs);
      const ips = outs.map((o) => /^0 .*inet (10\.77\.203\.\d+)\/24/s.exec(o)?.[1] ?? o);
      expect(ips.filter((ip) => !/^10\.77\.203\.\d+$/.test(ip))).toEqual([]);
      expect(new Set(ips).size).toBe(4);
      expect(execFileSync('ip', ['-4', '-o', 'addr', 'show', 'dev', br], { encoding: 'utf8' })).toContain(' 10.77.203.1/24 ');
      expect(ipamFiles(NET)).toEqual([]);
    } finally {
      expect(tsrun(['network', 'rm', NET]).code).toBe(0);
    }
    expect(existsSync(`/sys/class/net/${br}`)).toBe(false);
  });

  it('bad input: one line, exit 125, nothing left behind', async () => {
    const net = inspect(ON);
    const taken = net.containers[0]!.ip;
    const leaksBefore = leaks();
    const ipamBefore = ipamFiles(ON).sort();
    const fake = join(testEnv().base, 'fake-cni');
    mkdirSync(fake, { recursive: true });
    writeFileSync(join(fake, 'bridge'), '#!/bin/sh\ncat >/dev/null\necho \'{"cniVersion":"1.0.0","code":11,"msg":"refused by the test plugin"}\'\nexit 1\n');
    chmodSync(join(fake, 'bridge'), 0o755);
    if (!existsSync(join(fake, 'host-local'))) symlinkSync('/usr/lib/cni/host-local', join(fake, 'host-local'));
    const cases: [string[], RegExp, Record<string, string>?][] = [
      [['--network', 'nosuchnet'], new RegExp(`^tsrun: --network nosuchnet: no such network \\(networks: .*${ON}.*; or none, host\\)\\n$`)],
      [['--network', ON, '--ip', '10.77.9.9'], /^tsrun: --ip 10.77.9.9: 10.77.9.9 is outside the subnet 10.77.201.0\/24 \(network .*\)\n$/],
      [['--network', ON, '--ip', taken], new RegExp(`^tsrun: --ip ${taken}: already in use on network ${ON} by container [0-9a-f]{12}\\n$`)],
      [['--network', ON, '--ip', '10.77.201.300'], /^tsrun: --ip "10.77.201.300": not an IPv4 address\n$/],
      [['--network', 'host', '--ip', '10.77.201.5'], /^tsrun: --ip 10.77.201.5: needs --network NAME/],
      [['--network', ON], /^tsrun: CNI plugin bridge, host-local not found in \/nonexistent \(ENOENT\): install package containernetworking-plugins/, { TSRUN_CNI_PATH: '/nonexistent' }],
      // the plugin fails after the clone: the child is killed, the cleanup (DEL, cgroups, dirs) runs
      [['--network', ON, '--name', `${tag}-fail`], new RegExp(`^tsrun: network ${ON}: CNI ADD \\(bridge\\): refused by the test plugin \\(CNI error code 11\\)\\n$`), { TSRUN_CNI_PATH: fake }],
    ];
    for (const [flags, msg, env] of cases) {
      const r = tsrun(['run', '--rm', ...flags, 'busybox', 'true'], env ? { env } : {});
      expect(r.stderr).toMatch(msg);
      expect(r.code).toBe(125);
    }
    expect(leaks()).toEqual(leaksBefore);
    expect(ipamFiles(ON).sort()).toEqual(ipamBefore);
    expect(tsrun(['ps', '-a', '--format', 'json']).stdout).not.toContain(`${tag}-fail`);
    await until(() => readdirSync(`/sys/class/net/${net.bridge}/brif`).length === net.containers.length, 5000, 'no veth from the failed runs');
    for (const [args, msg] of [
      [['create', '--subnet', '10.77.201.128/25', `${tag}-x`], /overlaps network/],
      [['create', '--subnet', '10.77.203.1/24', `${tag}-x`], /host bits set: the subnet is 10.77.203.0\/24/],
      [['create', '--gateway', '10.1.1.1', '--subnet', '10.77.203.0/24', `${tag}-x`], /--gateway 10.1.1.1: 10.1.1.1 is outside the subnet/],
      [['create', ON], /already exists/],
      [['inspect', 'nosuchnet'], /^tsrun: network nosuchnet: no such network/],
    ] as [string[], RegExp][]) {
      const r = tsrun(['network', ...args]);
      expect(r.stderr).toMatch(msg);
      expect(r.code).toBe(125);
    }
    expect(existsSync(join(testEnv().data, 'networks', `${tag}-x.json`))).toBe(false);
  });

  it('network rm is refused while a container uses the network, then removes the bridge', async () => {
    const net = inspect(OFF);
    const busy = tsrun(['network', 'rm', OFF]);
    expect(busy.code).toBe(125);
    expect(busy.stderr).toMatch(new RegExp(`^tsrun: network ${OFF} is in use by container [a-z]+_[a-z_]+[0-9]?: stop or remove it first`)); // its generated name
    expect(existsSync(`/sys/class/net/${net.bridge}`)).toBe(true);
    // a stopped container (run without --rm) does not hold its network: its address is back
    const kept = `${tag}-kept`;
    for (const id of started.splice(0).filter((x) => x !== kept)) expect(tsrun(['rm', '-f', id]).code).toBe(0);
    expect(ipamFiles(OFF)).toEqual([]);
    expect(ipamFiles(ON)).toEqual([]);
    const bridges = [net.bridge, inspect(ON).bridge];
    const rm = tsrun(['network', 'rm', OFF, ON]);
    expect(rm.stderr).toBe('');
    expect(rm.stdout).toBe(`${OFF}\n${ON}\n`);
    // its later removal runs the DEL of a network that is gone: no error, nothing recreated
    const rmKept = tsrun(['rm', kept]);
    expect(rmKept.stderr).toBe('');
    expect(rmKept.code).toBe(0);
    for (const b of bridges) expect(existsSync(`/sys/class/net/${b}`)).toBe(false);
    expect(tsrun(['network', 'ls', '-q']).stdout).not.toContain(tag);
    // leak check: no veth, no bridge, no IPAM state, no netns, no container left
    await until(() => veths().every((v) => vethsBefore.includes(v)), 5000, 'no new veth');
    expect(sysNet().filter((d) => bridges.includes(d))).toEqual([]);
    expect(existsSync(join(testEnv().data, 'networks', 'ipam', ON))).toBe(false);
    expect(existsSync(join(testEnv().data, 'networks', 'ipam', OFF))).toBe(false);
    expect(runNetns()).toEqual(netnsBefore);
    expect(leaks()).toEqual([]);
  });
});
