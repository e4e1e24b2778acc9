import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync, chmodSync } from 'node:fs';
import { get } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { BIN, describeKernel, leaks, testEnv, tsrun, tsrunEnvVars } from './helpers.js';
import { eventually } from '../until.js';

// Issue 17 on the real kernel: -p through the CNI portmap plugin (DNAT), names between the
// members of a network (/etc/hosts kept current), outbound NAT per network. Every address is
// on this machine: the networks' bridges and an "outside" network namespace this file makes.

const tag = `p${process.pid.toString(36)}`;
const WEB = `${tag}-web`;
const ISO = `${tag}-iso`;
const INT = `${tag}-int`;
const OUT_NS = `tsrun-${tag}-out`;
const OUT_HOST = `${tag}o`; // host end of the outside's veth (IFNAMSIZ: ≤ 15)
const PORT = 20000 + (process.pid % 10000);

const natRules = () => spawnSync('iptables-save', ['-t', 'nat'], { encoding: 'utf8' }).stdout.split('\n').filter((l) => l.startsWith('-A') || l.startsWith(':'));
const filterRules = () => spawnSync('iptables-save', ['-t', 'filter'], { encoding: 'utf8' }).stdout.split('\n').filter((l) => l.startsWith('-A') || l.startsWith(':'));
const links = () => spawnSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean).map((l) => l.split(':')[1]!.trim().split('@')[0]!);

function httpGet(port: number, host = '127.0.0.1'): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = get({ host, port, path: '/', timeout: 3000 }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve(body));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
  });
}

function httpd(net: string, name: string, extra: string[] = [], body = name): string {
  const r = tsrun(['run', '-d', '--name', name, '--network', net, ...extra, 'busybox', 'sh', '-c', `mkdir -p /www && echo ${body} > /www/index.html && exec httpd -f -p 80 -h /www`]);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return r.stdout.trim();
}

describeKernel('networks people can use: -p, names, outbound NAT', () => {
  let natBefore: string[] = [];
  let filterBefore: string[] = [];
  let linksBefore: string[] = [];
  let forwardBefore = '';

  beforeAll(() => {
    natBefore = natRules();
    filterBefore = filterRules();
    linksBefore = links();
    forwardBefore = readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8');
    expect(tsrun(['network', 'create', '--subnet', '10.77.211.0/24', WEB]).code).toBe(0);
    expect(tsrun(['network', 'create', '--subnet', '10.77.212.0/24', '--icc=false', ISO]).code).toBe(0);
    expect(tsrun(['network', 'create', '--subnet', '10.77.213.0/24', '--internal', INT]).code).toBe(0);
  });

  afterAll(async () => {
    for (const c of JSON.parse(tsrun(['ps', '-a', '--format', 'json']).stdout || '[]')) tsrun(['rm', '-f', c.id]);
    for (const n of [WEB, ISO, INT]) tsrun(['network', 'rm', n]);
    spawnSync('ip', ['netns', 'del', OUT_NS]);
    spawnSync('ip', ['link', 'del', OUT_HOST]);
    writeFileSync('/proc/sys/net/ipv4/ip_forward', forwardBefore); // the bridge plugin turns forwarding on, as dockerd does
    // nothing of ours is left: no iptables rule or chain, no link, no mount, no process
    await eventually('links gone', () => expect(links().filter((l) => !linksBefore.includes(l))).toEqual([]));
    expect(natRules().filter((l) => !natBefore.includes(l))).toEqual([]);
    expect(filterRules().filter((l) => !filterBefore.includes(l))).toEqual([]);
    expect(leaks()).toEqual([]);
  });

  it('-p 127.0.0.1:PORT:80: busybox httpd answers from the host; inspect and `tsrun port` show the mapping', async () => {
    httpd(WEB, `${tag}-h1`, ['-p', `127.0.0.1:${PORT}:80`], 'hello-published');
    expect(await eventually('httpd answers', () => httpGet(PORT))).toBe('hello-published\n');
    expect(tsrun(['port', `${tag}-h1`]).stdout).toBe(`80/tcp -> 127.0.0.1:${PORT}\n`);
    expect(tsrun(['port', `${tag}-h1`, '80']).stdout).toBe(`127.0.0.1:${PORT}\n`);
    // `ps` has docker's PORTS column
    const ps = tsrun(['ps', '-f', `name=^${tag}-h1$`]).stdout.split('\n');
    expect(ps[0]).toMatch(/^CONTAINER ID +IMAGE +COMMAND +CREATED +STATUS +PORTS +NAMES$/);
    expect(ps[1]).toMatch(new RegExp(` 127\\.0\\.0\\.1:${PORT}->80/tcp +${tag}-h1$`));
    const [ins] = JSON.parse(tsrun(['inspect', `${tag}-h1`]).stdout);
    expect(ins.NetworkSettings.Ports).toEqual({ '80/tcp': [{ HostIp: '127.0.0.1', HostPort: String(PORT) }] });
    // the kernel's side: a DNAT rule to the container's address, made by portmap
    const ip = ins.NetworkSettings.Networks[WEB].IPAddress;
    expect(natRules().some((l) => l.includes(`--dport ${PORT}`) && l.includes(`--to-destination ${ip}:80`))).toBe(true);
    // the same host port again is refused before anything is made
    const again = tsrun(['run', '--rm', '--network', WEB, '-p', `127.0.0.1:${PORT}:80`, 'busybox', 'true']);
    expect(again.code).toBe(125);
    expect(again.stderr).toMatch(new RegExp(`^tsrun: -p 127.0.0.1:${PORT}:80: host port ${PORT}/tcp is already in use \\(EADDRINUSE\\)`));
    // rm removes its rules
    expect(tsrun(['rm', '-f', `${tag}-h1`]).code).toBe(0);
    expect(natRules().some((l) => l.includes(`--dport ${PORT}`))).toBe(false);
    await expect(httpGet(PORT)).rejects.toThrow(/ECONNREFUSED|timeout/);
  });

  it('-P publishes what the image EXPOSEs, -p 80 picks a free host port; bad input is refused by name', async () => {
    httpd(WEB, `${tag}-h2`, ['-p', '80'], 'ephemeral');
    const mapped = tsrun(['port', `${tag}-h2`, '80/tcp']).stdout.trim();
    expect(mapped).toMatch(/^0\.0\.0\.0:(3[2-9]\d{3}|[4-5]\d{4}|60\d{3})$/);
    expect(await eventually('httpd answers', () => httpGet(Number(mapped.split(':')[1])))).toBe('ephemeral\n');
    tsrun(['rm', '-f', `${tag}-h2`]);
    for (const [args, msg] of [
      [['-p', '8080:80'], '-p needs --network NAME'],
      [['--network', WEB, '-p', '70000:80'], '-p 70000:80: host port "70000" is not a port'],
      [['--network', WEB, '-p', '8000-8010:80'], 'port ranges are not supported'],
      [['--network', WEB, '-p', '1.2.3:80:80'], 'host address "1.2.3" is not an IPv4 address'],
      [['--network', WEB, '-p', '80/sctp'], 'protocol "sctp"'],
      [['--add-host', 'nocolon'], '--add-host "nocolon": expected HOST:IPv4'],
    ] as const) {
      const r = tsrun(['run', '--rm', ...args, 'busybox', 'true']);
      expect(r.code).toBe(125);
      expect(r.stderr).toContain(msg);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
    }
  });

  it('audit reads the published ports from the kernel\'s nat table: CIS 5.7 (privileged host port) and 5.13 (every host address)', () => {
    const bound = httpd(WEB, `${tag}-a1`, ['-p', `127.0.0.1:${PORT + 6}:80`]);
    const low = httpd(WEB, `${tag}-a2`, ['-p', '127.0.0.1:1000:80']);
    const all = httpd(WEB, `${tag}-a3`, ['-p', `${PORT + 7}:80`]);
    const verdicts = (id: string) => {
      const r = tsrun(['audit', '--json', id]);
      const rows = JSON.parse(r.stdout) as { id: string; status: string; detail: string }[];
      return Object.fromEntries(rows.filter((x) => x.id === '5.7' || x.id === '5.13').map((x) => [x.id, `${x.status} ${x.detail}`]));
    };
    expect(verdicts(bound)).toEqual({ '5.7': expect.stringMatching(new RegExp(`^PASS 127\\.0\\.0\\.1:${PORT + 6} -> 10\\.77\\.211\\.\\d+:80/tcp$`)), '5.13': expect.stringMatching(/^PASS 127\.0\.0\.1:/) });
    expect(verdicts(low)['5.7']).toMatch(/^WARN 127\.0\.0\.1:1000 -> .* \(host ports below 1024\)$/);
    expect(verdicts(all)['5.13']).toMatch(new RegExp(`^WARN 0\\.0\\.0\\.0:${PORT + 7} -> `));
    // a container that publishes nothing passes both
    expect(verdicts(httpd(WEB, `${tag}-a4`))).toEqual({ '5.7': 'PASS no port of the host is forwarded to it (nat table)', '5.13': 'PASS no port of the host is forwarded to it (nat table)' });
    for (const n of ['a1', 'a2', 'a3', 'a4']) tsrun(['rm', '-f', `${tag}-${n}`]);
  });

  it('icc=false still isolates the containers from each other while -p reaches each one', async () => {
    const a = httpd(ISO, `${tag}-i1`, ['-p', `127.0.0.1:${PORT + 1}:80`], 'iso-one');
    httpd(ISO, `${tag}-i2`, ['-p', `127.0.0.1:${PORT + 2}:80`], 'iso-two');
    expect(await eventually('i1', () => httpGet(PORT + 1))).toBe('iso-one\n');
    expect(await eventually('i2', () => httpGet(PORT + 2))).toBe('iso-two\n');
    const ipA = JSON.parse(tsrun(['inspect', a]).stdout)[0].NetworkSettings.Networks[ISO].IPAddress;
    // (busybox's static wget crashes with -T: nc's timeout is the witness)
    const r = tsrun(['exec', `${tag}-i2`, 'sh', '-c', `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 ${ipA} 80 || echo blocked`]);
    expect(r.stdout).toBe('blocked\n');
    expect(r.stderr).toContain('timed out');
    // the same request between the containers of a network with icc works (the check can pass)
    const ipB = JSON.parse(tsrun(['inspect', `${tag}-i2`]).stdout)[0].NetworkSettings.Networks[ISO].IPAddress;
    const fromHost = await httpGet(80, ipB);
    expect(fromHost).toBe('iso-two\n');
  });

  it('names: members find each other by --name and --network-alias; a leaving member is forgotten', async () => {
    const db = httpd(WEB, `${tag}-db`, ['--network-alias', 'database'], 'from-db');
    // busybox's static wget crashes on a refused connection: wait until the server listens
    const dbIp = JSON.parse(tsrun(['inspect', db]).stdout)[0].NetworkSettings.Networks[WEB].IPAddress;
    await eventually('db listens', () => httpGet(80, dbIp));
    const r = tsrun(['run', '--rm', '--name', `${tag}-app`, '--network', WEB, '--add-host', 'extra.example:10.1.2.3', 'busybox', 'sh', '-c', `wget -qO- http://${tag}-db/ && wget -qO- http://database/ && grep -c ${tag}-app /etc/hosts && grep extra.example /etc/hosts`]);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('from-db\nfrom-db\n1\n10.1.2.3\textra.example\n');
    // --dns/--dns-search write resolv.conf (read, not used: a lookup would leave this machine)
    const dns = tsrun(['run', '--rm', '--network', WEB, '--dns', '127.0.0.1', '--dns-search', 'corp.example', 'busybox', 'cat', '/etc/resolv.conf']);
    expect(dns.stdout).toMatch(/^search corp\.example\nnameserver 127\.0\.0\.1\n/);
    expect(dns.stdout).not.toMatch(/nameserver (?!127\.0\.0\.1)/);
    // the app has gone (--rm): the db's list no longer has it, and still has itself
    const hosts = tsrun(['exec', `${tag}-db`, 'cat', '/etc/hosts']).stdout;
    expect(hosts).toMatch(new RegExp(`\\t[0-9a-f]{12} ${tag}-db database\\n$`));
    expect(hosts).not.toContain(`${tag}-app`);
    tsrun(['rm', '-f', `${tag}-db`]);
  });

  it('outbound NAT: a container reaches "the outside" (a netns of this test) as the host; --internal does not get out', async () => {
    // the outside: a netns with a veth to the host (10.98.x.0/24) and busybox httpd whose CGI prints the client's address
    const sub = `10.98.${process.pid % 200}`;
    execFileSync('ip', ['netns', 'add', OUT_NS]);
    execFileSync('ip', ['link', 'add', OUT_HOST, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', OUT_NS]);
    execFileSync('ip', ['addr', 'add', `${sub}.1/24`, 'dev', OUT_HOST]);
    execFileSync('ip', ['link', 'set', OUT_HOST, 'up']);
    execFileSync('ip', ['-n', OUT_NS, 'addr', 'add', `${sub}.2/24`, 'dev', 'eth0']);
    execFileSync('ip', ['-n', OUT_NS, 'link', 'set', 'eth0', 'up']);
    execFileSync('ip', ['-n', OUT_NS, 'link', 'set', 'lo', 'up']);
    const www = join(testEnv().base, `${tag}-outside`);
    mkdirSync(join(www, 'cgi-bin'), { recursive: true });
    writeFileSync(join(www, 'cgi-bin', 'who'), '#!/usr/bin/busybox sh\necho "Content-Type: text/plain"\necho\necho "seen from $REMOTE_ADDR"\n');
    chmodSync(join(www, 'cgi-bin', 'who'), 0o755);
    const outside = spawn('ip', ['netns', 'exec', OUT_NS, '/usr/bin/busybox', 'httpd', '-f', '-p', '80', '-h', www], { stdio: 'ignore' });
    try {
      // a plain HTTP request through nc (busybox's static wget crashes on some answers)
      const ask = `printf 'GET /cgi-bin/who HTTP/1.0\\r\\n\\r\\n' | nc -w 2 ${sub}.2 80`;
      const r = await eventually('the outside answers', () => {
        const x = tsrun(['run', '--rm', '--network', WEB, 'busybox', 'sh', '-c', ask]);
        if (!x.stdout.includes('seen from')) throw new Error(x.stderr || x.stdout);
        return x;
      });
      // masqueraded: the outside sees the host's address on its link, not the container's 10.77.211.x
      expect(r.stdout).toMatch(new RegExp(`seen from \\[?(::ffff:)?${sub.replaceAll('.', '\\.')}\\.1\\]?\\n`));
      expect(r.stdout).not.toContain('10.77.211.');
      const internal = tsrun(['run', '--rm', '--network', INT, 'busybox', 'sh', '-c', `ip route; ${ask} || echo no-way-out`]);
      expect(internal.stdout).not.toMatch(/default/);
      expect(internal.stdout).toContain('no-way-out\n');
    } finally {
      outside.kill('SIGKILL');
      await new Promise((r) => outside.on('exit', r));
    }
  });

  it('rules go on every exit path: foreground exit, SIGKILL of the CLI then rm -f, and prune', async () => {
    const hasRule = (port: number) => natRules().some((l) => l.includes(`--dport ${port}`));
    // foreground, exits on its own
    expect(tsrun(['run', '--rm', '--network', WEB, '-p', `127.0.0.1:${PORT + 3}:80`, 'busybox', 'true']).code).toBe(0);
    expect(hasRule(PORT + 3)).toBe(false);
    // the CLI SIGKILLed while the container runs: the container (and its port) live on; rm -f removes them
    const cli = spawn(BIN, ['run', '--name', `${tag}-k`, '--network', WEB, '-p', `127.0.0.1:${PORT + 4}:80`, 'busybox', 'sh', '-c', 'echo up; exec sleep 60'], { env: tsrunEnvVars(), stdio: ['ignore', 'pipe', 'ignore'] });
    await new Promise<void>((r) => cli.stdout.once('data', () => r()));
    cli.kill('SIGKILL');
    await new Promise((r) => cli.on('exit', r));
    expect(hasRule(PORT + 4)).toBe(true);
    expect(tsrun(['rm', '-f', `${tag}-k`]).code).toBe(0);
    expect(hasRule(PORT + 4)).toBe(false);
    // kept after exit (no --rm): the port goes when it stops, as docker's does; prune removes the rest
    expect(tsrun(['run', '--name', `${tag}-s`, '--network', WEB, '-p', `127.0.0.1:${PORT + 5}:80`, 'busybox', 'true']).code).toBe(0);
    expect(hasRule(PORT + 5)).toBe(false);
    const id = JSON.parse(tsrun(['inspect', `${tag}-s`]).stdout)[0].Id as string;
    expect(tsrun(['system', 'prune']).stdout).toContain(id);
    expect(existsSync(join(testEnv().root, id))).toBe(false);
  });
});
