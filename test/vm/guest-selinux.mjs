// The in-guest SELinux suite (enforcing, refpolicy + test/vm/selinux/tsrun.te). One line per
// check, "ok"/"not ok", as guest-suite.mjs; exits with the number of failures.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('../..', import.meta.url).pathname;
const env = { ...process.env, TSRUN_DATA: '/tmp/tsrun-data', TSRUN_ROOT: '/tmp/tsrun-run' };
const tsrun = (args) => spawnSync(join(root, 'bin/tsrun'), args, { env, encoding: 'utf8', timeout: 120000 });
let n = 0;
let failures = 0;
async function test(name, fn) {
  n++;
  const t0 = Date.now();
  try {
    const note = await fn();
    console.log(`ok ${n} - ${name}${note ? ` # ${note}` : ''} (${Date.now() - t0} ms)`);
  } catch (e) {
    failures++;
    console.log(`not ok ${n} - ${name}: ${e?.stack ?? e}`);
  }
}
function check(cond, what) {
  if (!cond) throw new Error(what);
}

// labelled while still permissive: a volume of container A's pair, then enforce
mkdirSync('/tmp/vol-a', { recursive: true });
writeFileSync('/tmp/vol-a/f', 'secret of c1,c2\n');
const chcon = spawnSync('chcon', ['-R', 'system_u:object_r:container_file_t:s0:c1,c2', '/tmp/vol-a'], { encoding: 'utf8' });
const imp = tsrun(['import', '--change', 'CMD ["sh"]', join(root, 'test/.cache/vm/busybox-rootfs.tar'), 'busybox']);
writeFileSync('/sys/fs/selinux/enforce', '1');

const SCRIPT = 'cat /proc/self/attr/current; echo; cat /data/f; echo read=$?; echo x > /data/g; echo write=$?';
// SELinux's attr/current ends in a NUL
const run = (flags) => {
  const r = tsrun(['run', '--rm', ...flags, '-v', '/tmp/vol-a:/data', 'busybox', 'sh', '-c', SCRIPT]);
  return { ...r, stdout: r.stdout.replace(/\0/g, '') };
};

await test('SELinux is enforcing with the tsrun module loaded', () => {
  check(chcon.status === 0, `chcon: ${chcon.stderr}`);
  check(imp.status === 0, `import: ${imp.stderr}`);
  const lsm = readFileSync('/sys/kernel/security/lsm', 'utf8').trim();
  check(lsm.split(',').includes('selinux'), `LSMs ${lsm}`);
  check(readFileSync('/sys/fs/selinux/enforce', 'utf8').trim() === '1', 'not enforcing');
  return `LSMs ${lsm}`;
});

await test('default: container_t with a fresh MCS pair; a volume of another pair is denied (EACCES)', () => {
  const r = run([]);
  check(r.status === 0, `exit ${r.status}: ${r.stderr.slice(-800)}`);
  const ctx = r.stdout.split('\n')[0];
  const m = /^system_u:system_r:container_t:s0:c(\d+),c(\d+)$/.exec(ctx);
  check(m && Number(m[1]) < Number(m[2]), `context ${ctx}`);
  check(ctx !== 'system_u:system_r:container_t:s0:c1,c2', 'drew c1,c2 (1 in 523776): rerun');
  check(/^read=1$/m.test(r.stdout) && /Permission denied/.test(r.stderr), `read: ${r.stdout} ${r.stderr}`);
  check(/^write=1$/m.test(r.stdout), `write: ${r.stdout}`);
  return ctx;
});

await test('label=level:s0:c1,c2: the same pair as the volume reads and writes it', () => {
  const r = run(['--security-opt', 'label=level:s0:c1,c2']);
  check(r.status === 0, `exit ${r.status}: ${r.stderr.slice(-800)}`);
  check(r.stdout.split('\n')[0] === 'system_u:system_r:container_t:s0:c1,c2', `context ${r.stdout}`);
  check(/^secret of c1,c2$/m.test(r.stdout) && /^read=0$/m.test(r.stdout) && /^write=0$/m.test(r.stdout), `${r.stdout} ${r.stderr}`);
  return 'read=0 write=0';
});

await test('label=disable: not confined (the runtime\'s own domain), the volume is readable', () => {
  const r = run(['--security-opt', 'label=disable']);
  check(r.status === 0, `exit ${r.status}: ${r.stderr.slice(-800)}`);
  check(!/container_t/.test(r.stdout.split('\n')[0]), `context ${r.stdout}`);
  check(/^read=0$/m.test(r.stdout), `${r.stdout} ${r.stderr}`);
  return r.stdout.split('\n')[0];
});

await test(':Z relabels a volume to the container\'s own pair (without it: EACCES); :z to the shared s0; system paths refused', () => {
  mkdirSync('/tmp/vol-b', { recursive: true });
  writeFileSync('/tmp/vol-b/f', 'b\n');
  const label = (p) => spawnSync('stat', ['-c', '%C', p], { encoding: 'utf8' }).stdout.trim();
  const setB = spawnSync('chcon', ['-R', 'system_u:object_r:container_file_t:s0:c5,c6', '/tmp/vol-b'], { encoding: 'utf8' });
  check(setB.status === 0, `chcon vol-b: ${setB.stderr}`);
  const S = 'cat /data/f; echo read=$?';
  const without = tsrun(['run', '--rm', '--security-opt', 'label=level:s0:c7,c8', '-v', '/tmp/vol-b:/data', 'busybox', 'sh', '-c', S]);
  check(/^read=1$/m.test(without.stdout) && /Permission denied/.test(without.stderr), `without :Z: ${without.stdout} ${without.stderr}`);
  const withZ = tsrun(['run', '--rm', '--security-opt', 'label=level:s0:c7,c8', '-v', '/tmp/vol-b:/data:Z', 'busybox', 'sh', '-c', S]);
  check(withZ.status === 0 && /^read=0$/m.test(withZ.stdout), `with :Z: ${withZ.status} ${withZ.stdout} ${withZ.stderr}`);
  const afterZ = label('/tmp/vol-b/f');
  check(afterZ === 'system_u:object_r:container_file_t:s0:c7,c8', `label after :Z ${afterZ}`);
  const withz = tsrun(['run', '--rm', '-v', '/tmp/vol-b:/data:z', 'busybox', 'sh', '-c', S]);
  check(withz.status === 0 && /^read=0$/m.test(withz.stdout), `with :z: ${withz.status} ${withz.stdout} ${withz.stderr}`);
  const afterz = label('/tmp/vol-b/f');
  check(afterz === 'system_u:object_r:container_file_t:s0', `label after :z ${afterz}`);
  const sys = tsrun(['run', '--rm', '-v', '/tmp:/data:Z', 'busybox', 'true']);
  check(sys.status === 125 && /refusing to relabel \/tmp/.test(sys.stderr), `system path: ${sys.status} ${sys.stderr}`);
  check(label('/tmp') !== 'system_u:object_r:container_file_t:s0:c7,c8', '/tmp was relabelled');
  return `:Z → ${afterZ}; :z → ${afterz}`;
});

writeFileSync('/sys/fs/selinux/enforce', '0');
// the denials, for whoever reads a failure
if (failures) for (const l of spawnSync('dmesg', { encoding: 'utf8' }).stdout.split('\n').filter((x) => /avc: +denied/.test(x)).slice(0, 15)) console.log(`# ${l.replace(/^.*avc: +/, 'avc: ')}`);
console.log(`1..${n}`);
process.exit(failures);
