// docker's CLI conventions on real containers: ps -q / --filter / --format, inspect -f,
// images -q / --format, stats --format, and rm/stop/kill naming what they acted on. Each test
// runs in a private --root and --data-root, so the listing holds only this file's containers.
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, linkSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeKernel, testEnv, tsrun, type Result } from './helpers.js';

let dir = '';
const cli = (...args: string[]): Result => tsrun(['--root', join(dir, 'root'), '--data-root', join(dir, 'data'), ...args]);
const ok = (...args: string[]): string => {
  const r = cli(...args);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return r.stdout;
};
const lines = (s: string) => s.split('\n').filter(Boolean);

// the keys `docker ps --format '{{json .}}'` prints (docker 20.10.24, seen on this machine)
const DOCKER_PS_KEYS = ['Command', 'CreatedAt', 'ID', 'Image', 'Labels', 'LocalVolumes', 'Mounts', 'Names', 'Networks', 'Ports', 'RunningFor', 'Size', 'State', 'Status'];
const DOCKER_IMAGES_KEYS = ['Containers', 'CreatedAt', 'CreatedSince', 'Digest', 'ID', 'Repository', 'SharedSize', 'Size', 'Tag', 'UniqueSize', 'VirtualSize'];

describeKernel('docker CLI conventions: ps/images/inspect/stats --format, ps --filter, -q', () => {
  let one = '';
  let two = '';
  let three = '';
  /** the inits of every container this file ran */
  const seen: number[] = [];
  const pidOf = (ref: string) => {
    const pid = Number(ok('inspect', '-f', '{{.State.Pid}}', ref).trim());
    seen.push(pid);
    return pid;
  };

  beforeAll(() => {
    dir = join(testEnv().base, `cli-format-${process.pid}`);
    mkdirSync(dir, { recursive: true });
    mkdirSync(join(dir, 'volume-of-one'));
    one = ok('run', '-d', '--name', 'one', '-l', 'app=web', '-l', 'tier=front', '-v', `${join(dir, 'volume-of-one')}:/data:ro`, 'busybox', 'sleep', '300').trim();
    two = ok('run', '-d', '--name', 'two', '--label', 'app=db', 'busybox', 'sleep', '300').trim();
    expect(cli('run', '--name', 'three', 'busybox', 'sh', '-c', 'exit 3').code).toBe(3);
    three = JSON.parse(ok('ps', '-a', '--format', 'json')).find((c: { name: string }) => c.name === 'three').id;
    pidOf('one');
    pidOf('two');
  });

  afterAll(() => {
    const left = JSON.parse(cli('ps', '-a', '--format', 'json').stdout || '[]') as { id: string; pid: number }[];
    for (const c of left) cli('rm', '-f', c.id);
    // nothing of ours is left: no process, no state, no container data, no mount. (leaks()
    // would also count other worktrees' containers being created on this shared host.)
    for (const pid of [...seen, ...left.map((c) => c.pid)].filter((p) => p > 0)) expect(() => process.kill(pid, 0), `pid ${pid}`).toThrow(/ESRCH/);
    expect(readdirSync(join(dir, 'root')).filter((d) => !d.startsWith('.'))).toEqual([]);
    const containers = join(dir, 'data', 'containers');
    expect(existsSync(containers) ? readdirSync(containers) : []).toEqual([]);
    expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(dir);
    rmSync(dir, { recursive: true, force: true });
  });

  describe('ps', () => {
    it('-q: the short ids of running containers, newest first; -a adds stopped ones; --no-trunc full ids', () => {
      expect(lines(ok('ps', '-q'))).toEqual([two.slice(0, 12), one.slice(0, 12)]);
      expect(lines(ok('ps', '-aq'))).toEqual([three.slice(0, 12), two.slice(0, 12), one.slice(0, 12)]);
      expect(lines(ok('ps', '-q', '--no-trunc'))).toEqual([two, one]);
    });

    it('--filter: label, name (regexp), id (prefix), status, exited; same key ORed, keys ANDed', () => {
      const names = (...f: string[]) => lines(ok('ps', ...f.flatMap((x) => ['-f', x]), '--format', '{{.Names}}'));
      expect(names('label=app=web')).toEqual(['one']);
      expect(names('label=app')).toEqual(['two', 'one']);
      expect(names('label=app', 'label=tier=front')).toEqual(['one']);
      expect(names('label=app=nope')).toEqual([]);
      expect(names('name=^one$', 'name=^/two$')).toEqual(['two', 'one']);
      expect(names('name=o', 'label=app=db')).toEqual(['two']);
      expect(names(`id=${one.slice(0, 5)}`)).toEqual(['one']);
      // a status filter lists stopped containers without -a, as docker's
      expect(names('status=exited')).toEqual(['three']);
      expect(names('status=running', 'status=exited')).toEqual(['three', 'two', 'one']);
      expect(names('exited=3')).toEqual(['three']);
      // before/since a container (made in the order one, two, three): running ones, or all with -a
      expect(names('before=two')).toEqual(['one']);
      expect(names('since=one')).toEqual(['two']);
      expect(lines(ok('ps', '-a', '-f', 'since=one', '--format', '{{.Names}}'))).toEqual(['three', 'two']);
      expect(lines(ok('ps', '-a', '-f', `before=${three.slice(0, 12)}`, '-f', 'since=one', '--format', '{{.Names}}'))).toEqual(['two']);
      expect(names('exited=0')).toEqual([]);
      expect(names('ancestor=busybox', 'status=running')).toEqual(['two', 'one']);
      expect(lines(ok('ps', '-q', '-f', 'name=two'))).toEqual([two.slice(0, 12)]);
    });

    it('ps ID keeps the OCI pid list: runc\'s `ps -f json ID` (-f is runc\'s --format) too', () => {
      const pid = Number(ok('inspect', '-f', '{{.State.Pid}}', 'one').trim());
      expect(JSON.parse(ok('ps', '--format', 'json', 'one'))).toEqual([pid]);
      expect(JSON.parse(ok('ps', '-f', 'json', 'one'))).toEqual([pid]);
      const r = cli('ps', '-f', 'name=x', 'one');
      expect(r.code).toBe(125);
      expect(r.stderr).toMatch(/--filter "name=x": filters list containers; with a container ID, ps lists its pids/);
    });

    it('--filter with an unknown key or a bad value: exit 125 naming it, nothing on stdout', () => {
      for (const [f, msg] of [
        ['colour=red', /--filter "colour=red": invalid filter "colour"/],
        ['status=asleep', /invalid status "asleep"/],
        ['name=(', /not a regular expression/],
        ['before=nobody-has-this', /no such container/],
      ] as const) {
        const r = cli('ps', '-f', f);
        expect(r.code).toBe(125);
        expect(r.stdout).toBe('');
        expect(r.stderr).toMatch(msg);
      }
    });

    it('--format: fields, `table` with a header row and aligned columns, {{json .}} with docker\'s keys', () => {
      expect(ok('ps', '--format', '{{.ID}} {{.Names}} {{.Image}} {{.State}} {{.Command}}')).toBe(`${two.slice(0, 12)} two busybox running "sleep 300"\n${one.slice(0, 12)} one busybox running "sleep 300"\n`);
      expect(ok('ps', '-a', '-f', 'name=three', '--format', '{{.Status}}')).toMatch(/^Exited \(3\) (Less than a second|\d+ seconds?) ago\n$/);
      expect(ok('ps', '-f', 'name=one', '--format', '{{.Labels}}|{{.Label "tier"}}|{{.Networks}}')).toBe('app=web,tier=front|front|none\n');
      // MOUNTS: the host path of each -v (cut to 15 characters as docker's unless --no-trunc),
      // not the /etc files tsrun binds in; LocalVolumes counts named volumes, which tsrun has not
      const vol = join(dir, 'volume-of-one');
      expect(ok('ps', '--format', '{{.Names}}:{{.Mounts}}:{{.LocalVolumes}}')).toBe(`two::0\none:${[...vol].slice(0, 14).join('')}…:0\n`);
      expect(ok('ps', '--no-trunc', '-f', 'name=one', '--format', '{{.Mounts}}')).toBe(`${vol}\n`);
      expect(ok('ps', '-f', 'name=one', '--format', '{{.CreatedAt}}')).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+0000 UTC\n$/);
      const table = ok('ps', '--format', 'table {{.ID}}\\t{{.Names}}\\t{{.Status}}');
      expect(lines(table)[0]).toBe('CONTAINER ID   NAMES     STATUS');
      expect(lines(table)[1]).toMatch(new RegExp(`^${two.slice(0, 12)}   two       Up `));
      const json = lines(ok('ps', '-a', '--format', '{{json .}}')).map((l) => JSON.parse(l) as Record<string, string>);
      expect(json.map((j) => Object.keys(j))).toEqual([DOCKER_PS_KEYS, DOCKER_PS_KEYS, DOCKER_PS_KEYS]);
      expect(json.map((j) => [j.Names, j.State])).toEqual([
        ['three', 'exited'],
        ['two', 'running'],
        ['one', 'running'],
      ]);
    });

    it('--format errors name --format and the column: exit 125, nothing on stdout', () => {
      let r = cli('ps', '--format', '{{.ID}} {{.Nope}}');
      expect(r.code).toBe(125);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(/--format "\{\{\.ID\}\} \{\{\.Nope\}\}": column 11: executing at <\.Nope>: can't evaluate field Nope/);
      r = cli('ps', '--format', '{{.ID');
      expect(r.code).toBe(125);
      expect(r.stderr).toMatch(/--format "\{\{\.ID": column 1: unclosed action/);
    });
  });

  describe('inspect -f', () => {
    it('{{.State.Pid}} is the pid the kernel shows for the container\'s init (pid 1 of its namespace, running its command)', () => {
      const pid = Number(ok('inspect', '-f', '{{.State.Pid}}', 'one').trim());
      expect(pid).toBeGreaterThan(1);
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      expect(status).toMatch(new RegExp(`^NSpid:\\s+${pid}\\s+1$`, 'm'));
      expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8')).toBe('sleep\x00300\x00');
      // and the same as the long form
      expect(JSON.parse(ok('inspect', 'one'))[0].State.Pid).toBe(pid);
      expect(ok('inspect', '--format', '{{.Name}} {{.State.Status}}', 'one', 'two')).toBe('one running\ntwo running\n');
    });

    it('{{json}}, index and range over the container\'s config; a missing key is an error', () => {
      expect(JSON.parse(ok('inspect', '-f', '{{json .Config.process.args}}', 'one'))).toEqual(['sleep', '300']);
      expect(ok('inspect', '-f', '{{index .Config.annotations "tsrun.labels"}}', 'one')).toBe('{"app":"web","tier":"front"}\n');
      expect(ok('inspect', '-f', '{{range .Config.process.args}}[{{.}}]{{end}}', 'two')).toBe('[sleep][300]\n');
      expect(ok('inspect', '-f', '{{.State.ExitCode}}', 'three')).toBe('3\n');
      const r = cli('inspect', '-f', '{{.State.Nope}}', 'one');
      expect(r.code).toBe(125);
      expect(r.stderr).toMatch(/--format "\{\{\.State\.Nope\}\}": column 3: executing at <\.State\.Nope>: map has no entry for key "Nope"/);
    });

    it('takes images too (docker inspect), and image inspect -f', () => {
      const id = ok('inspect', '-f', '{{.Id}}', 'busybox').trim();
      expect(id).toMatch(/^sha256:[0-9a-f]{64}$/);
      expect(ok('image', 'inspect', '-f', '{{.Id}}', 'busybox').trim()).toBe(id);
      expect(ok('inspect', '--type', 'image', '-f', '{{json .RepoTags}}', 'busybox')).toBe('["busybox:latest"]\n');
      const r = cli('inspect', '-f', '{{.Id}}', 'no-such-thing');
      expect(r.code).toBe(125);
      expect(r.stderr).toMatch(/no such object: "no-such-thing"/);
    });
  });

  describe('images', () => {
    it('-q prints each image id once, however many names it has; --format with docker\'s fields and keys', () => {
      ok('tag', 'busybox', 'mybox:1');
      const id = ok('inspect', '-f', '{{.Id}}', 'busybox').trim();
      expect(lines(ok('images', '--format', '{{.Repository}}:{{.Tag}}'))).toEqual(['busybox:latest', 'mybox:1']);
      expect(ok('images', '-q')).toBe(`${id.slice(7, 19)}\n`);
      expect(ok('images', '-q', '--no-trunc')).toBe(`${id}\n`);
      const json = lines(ok('images', '--format', '{{json .}}')).map((l) => JSON.parse(l) as Record<string, string>);
      expect(json.map((j) => Object.keys(j))).toEqual([DOCKER_IMAGES_KEYS, DOCKER_IMAGES_KEYS]);
      expect(json[0]).toMatchObject({ Repository: 'busybox', Tag: 'latest', ID: id.slice(7, 19), Digest: '<none>', Size: expect.stringMatching(/^[\d.]+[kM]B$/) });
      expect(lines(ok('images', '--format', 'table {{.Repository}}\\t{{.ID}}'))).toEqual(['REPOSITORY   IMAGE ID', `busybox      ${id.slice(7, 19)}`, `mybox        ${id.slice(7, 19)}`]);
      ok('rmi', 'mybox:1');
    });

    it('SIZE is what an image holds unpacked, as docker\'s: its files and symlinks, a hard link once (not the compressed layers)', () => {
      const src = join(dir, 'sized');
      mkdirSync(join(src, 'd'), { recursive: true });
      writeFileSync(join(src, 'a'), Buffer.alloc(1000, 1));
      writeFileSync(join(src, 'd', 'b'), randomBytes(2345));
      linkSync(join(src, 'a'), join(src, 'd', 'a-again'));
      symlinkSync('a', join(src, 'l'));
      ok('import', src, 'sized:1');
      try {
        expect(ok('image', 'inspect', '-f', '{{.Size}}', 'sized:1')).toBe('3346\n'); // 1000 + 2345 + 1
        expect(lines(ok('images', '--format', '{{.Repository}} {{.Size}}'))).toContain('sized 3.35kB');
      } finally {
        ok('rmi', 'sized:1');
      }
    });
  });

  describe('stats --no-stream --format', () => {
    it('docker\'s fields, read from the container\'s cgroup', () => {
      expect(ok('stats', '--no-stream', '--format', '{{.Container}} {{.Name}} {{.ID}} {{.PIDs}}', 'one')).toBe(`one one ${one.slice(0, 12)} 1\n`);
      const row = JSON.parse(ok('stats', '--no-stream', '--format', '{{json .}}', 'two').trim()) as Record<string, string>;
      expect(Object.keys(row)).toEqual(['BlockIO', 'CPUPerc', 'Container', 'ID', 'MemPerc', 'MemUsage', 'Name', 'NetIO', 'PIDs']);
      expect(row).toMatchObject({ Container: 'two', Name: 'two', PIDs: '1', CPUPerc: expect.stringMatching(/^\d+\.\d\d%$/) });
      // NET I/O: only loopback in --network none, which docker does not count either
      expect(row.NetIO).toBe('0B / 0B');
      // BLOCK I/O: what the container's blkio cgroup says (v1 here), as docker's decimal sizes
      const pid = Number(ok('inspect', '-f', '{{.State.Pid}}', 'two').trim());
      const blkio = /^\d+:blkio:(.*)$/m.exec(readFileSync(`/proc/${pid}/cgroup`, 'utf8'));
      if (blkio) {
        const svc = readFileSync(join('/sys/fs/cgroup/blkio', blkio[1]!, 'blkio.throttle.io_service_bytes_recursive'), 'utf8');
        const sum = (op: string) => [...svc.matchAll(new RegExp(`^\\S+:\\S+ ${op} (\\d+)$`, 'gm'))].reduce((a, m) => a + Number(m[1]), 0);
        const human = (n: number) => (n < 1000 ? `${n}B` : expect.stringMatching(/^[\d.]+[kMGT]B$/));
        expect(row.BlockIO.split(' / ')).toEqual([human(sum('Read')), human(sum('Write'))]);
      } else expect(row.BlockIO).toMatch(/^[\d.]+[kMGT]?B \/ [\d.]+[kMGT]?B$/);
      const table = lines(ok('stats', '--no-stream', '--format', 'table {{.Name}}\\t{{.PIDs}}'));
      expect(table[0]).toBe('NAME      PIDS');
      expect(table.slice(1).sort()).toEqual(['one       1', 'two       1']);
      const r = cli('stats', '--no-stream', '--format', '{{.Bogus}}');
      expect(r.code).toBe(125);
      expect(r.stderr).toMatch(/--format "\{\{\.Bogus\}\}": column 3: executing at <\.Bogus>/);
    });
  });

  describe('labels from the image', () => {
    it('a container gets its image\'s LABELs under its own --label values (docker merges them so)', () => {
      // a docker-save directory: one layer (the probe root), a config with Labels
      const img = join(dir, 'labelled');
      mkdirSync(img);
      execFileSync('tar', ['-C', testEnv().rootfs.probe, '-cf', join(img, 'layer.tar'), '.']);
      const diffId = `sha256:${createHash('sha256').update(readFileSync(join(img, 'layer.tar'))).digest('hex')}`;
      const config = { architecture: 'amd64', os: 'linux', config: { Cmd: ['sleep', '300'], Labels: { 'org.example.from': 'image', app: 'image-value', bad: 7 } }, rootfs: { type: 'layers', diff_ids: [diffId] } };
      writeFileSync(join(img, 'config.json'), JSON.stringify(config));
      writeFileSync(join(img, 'manifest.json'), JSON.stringify([{ Config: 'config.json', RepoTags: ['labelled:1'], Layers: ['layer.tar'] }]));
      ok('import', img);
      ok('run', '-d', '--name', 'lab', '-l', 'app=mine', 'labelled:1');
      pidOf('lab');
      expect(ok('ps', '-f', 'label=org.example.from=image', '--format', '{{.Names}} {{.Labels}}')).toBe('lab app=mine,org.example.from=image\n');
      expect(ok('ps', '-f', 'ancestor=labelled:1', '--format', '{{.Names}}')).toBe('lab\n');
      expect(ok('rm', '-f', 'lab')).toBe('lab\n');
      ok('rmi', 'labelled:1');
    });
  });

  describe('rm, stop, kill name what they acted on', () => {
    it('stop and docker-style kill print each argument as given; OCI kill ID SIGNAL prints nothing; rm prints each', () => {
      expect(ok('stop', '-t', '1', 'one')).toBe('one\n');
      expect(ok('kill', '-s', 'KILL', two.slice(0, 12))).toBe(`${two.slice(0, 12)}\n`);
      const four = ok('run', '-d', '--name', 'four', 'busybox', 'sleep', '300').trim();
      pidOf('four');
      expect(ok('kill', four, 'KILL')).toBe('');
      const gone = Date.now() + 5000;
      while (JSON.parse(ok('ps', '-a', '--format', 'json')).some((c: { status: string }) => c.status !== 'stopped') && Date.now() < gone);
      expect(lines(ok('ps', '-q'))).toEqual([]);
      expect(ok('rm', 'one', two, three.slice(0, 12), 'four')).toBe(`one\n${two}\n${three.slice(0, 12)}\nfour\n`);
      expect(ok('ps', '-aq')).toBe('');
    });

    it('rm/stop/kill of several: one that fails is reported and the others are still done (as docker), exit 125', () => {
      const a = ok('run', '-d', '--name', 'five', 'busybox', 'sleep', '300').trim();
      const b = ok('run', '-d', '--name', 'six', 'busybox', 'sleep', '300').trim();
      pidOf('five');
      pidOf('six');
      const k = cli('kill', '-s', 'KILL', 'five', 'no-such-one', 'six');
      expect(k.stdout).toBe('five\nsix\n');
      expect(k.stderr).toMatch(/^tsrun: .*no-such-one/);
      expect(lines(k.stderr)).toHaveLength(1);
      expect(k.code).toBe(125);
      const r = cli('rm', 'five', 'no-such-one', 'six');
      expect(r.stdout).toBe('five\nsix\n');
      expect(r.stderr).toMatch(/^tsrun: .*no-such-one/);
      expect(r.code).toBe(125);
      expect(existsSync(join(dir, 'root', a))).toBe(false);
      expect(existsSync(join(dir, 'root', b))).toBe(false);
      expect(ok('ps', '-aq')).toBe('');
    });
  });
});
