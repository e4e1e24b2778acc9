// Boots a stock Debian kernel under QEMU (software emulation) with only cgroup2 mounted,
// sharing this machine's root read-only and the project read-write over 9p, and runs one
// script inside. Recipe and measurements: /work/shared/cgroup-v2-vm.md. Installs what it
// needs with apt-get, so a fresh CI machine can run it.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

export const PROJECT = resolve(new URL('../..', import.meta.url).pathname);
export const CACHE = join(PROJECT, 'test/.cache/vm');

// Load order matters: Debian builds these as modules and ships no modules.dep for busybox.
const MODULES = ['virtio_ring', 'virtio', 'virtio_pci_modern_dev', 'virtio_pci_legacy_dev', 'virtio_pci', 'netfs', 'fscache', '9pnet', '9pnet_virtio', '9p', 'overlay'];

function sh(cmd: string, args: string[], opts: { cwd?: string } = {}): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', ...opts, maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}): ${r.stderr || r.error?.message || ''}`.trim());
  return r.stdout;
}

function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

/** qemu-system-x86_64, a static busybox and apparmor_parser, from Debian packages when absent. */
export function ensureTools(): void {
  const staticBusybox = existsSync('/bin/busybox') && /not a dynamic executable|statically linked/.test(spawnSync('ldd', ['/bin/busybox'], { encoding: 'utf8' }).stdout + spawnSync('ldd', ['/bin/busybox'], { encoding: 'utf8' }).stderr);
  // apparmor: apparmor_parser, which the guest (AppArmor active) runs from the shared root
  const pkgs = [...(have('qemu-system-x86_64') ? [] : ['qemu-system-x86']), ...(staticBusybox ? [] : ['busybox-static']), ...(have('apparmor_parser') ? [] : ['apparmor'])];
  if (pkgs.length) {
    if (process.getuid?.() !== 0) throw new Error(`the VM harness needs ${pkgs.join(', ')} (apt-get install needs root)`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    let r = spawnSync('apt-get', ['install', '-y', '--no-install-recommends', ...pkgs], { encoding: 'utf8', env });
    if (r.status !== 0) {
      spawnSync('apt-get', ['update'], { encoding: 'utf8', env });
      r = spawnSync('apt-get', ['install', '-y', '--no-install-recommends', ...pkgs], { encoding: 'utf8', env });
      if (r.status !== 0) throw new Error(`apt-get install ${pkgs.join(' ')} failed: ${r.stderr}`);
    }
  }
}

/**
 * The current Debian generic kernel (not -cloud: it lacks 9p), downloaded with apt-get and
 * unpacked, never installed (installing runs boot hooks). Only vmlinuz and the modules the
 * initramfs loads are kept, so the cache stays small.
 */
export function ensureKernel(): { vmlinuz: string; modules: string; version: string } {
  mkdirSync(CACHE, { recursive: true });
  const depends = sh('apt-cache', ['depends', 'linux-image-amd64']);
  const pkg = /Depends: (linux-image-[\w.+-]+-amd64)\b/.exec(depends)?.[1];
  if (!pkg) throw new Error(`cannot find the kernel package behind linux-image-amd64:\n${depends}`);
  const version = pkg.replace(/^linux-image-/, '');
  const dir = join(CACHE, `kernel-${version}`);
  const vmlinuz = join(dir, 'vmlinuz');
  const modules = join(dir, 'modules');
  if (!existsSync(vmlinuz) || !MODULES.every((m) => existsSync(join(modules, `${m}.ko`)))) {
    const debs = readdirSync(CACHE).filter((f) => f.startsWith(`${pkg}_`) && f.endsWith('.deb'));
    if (debs.length === 0) sh('apt-get', ['download', pkg], { cwd: CACHE });
    const deb = readdirSync(CACHE).find((f) => f.startsWith(`${pkg}_`) && f.endsWith('.deb'));
    if (!deb) throw new Error(`apt-get download ${pkg} left no .deb in ${CACHE}`);
    const tmp = join(CACHE, `unpack-${process.pid}`);
    rmSync(tmp, { recursive: true, force: true });
    try {
      sh('dpkg-deb', ['-x', join(CACHE, deb), tmp]);
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(modules, { recursive: true });
      copyFileSync(join(tmp, `boot/vmlinuz-${version}`), vmlinuz);
      for (const m of MODULES) copyFileSync(findModule(join(tmp, 'lib/modules', version), m), join(modules, `${m}.ko`));
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }
  return { vmlinuz, modules, version };
}

function findModule(root: string, name: string): string {
  const stack = [root];
  while (stack.length) {
    const d = stack.pop()!;
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) stack.push(p);
      else if (e.name === `${name}.ko`) return p;
    }
  }
  throw new Error(`module ${name}.ko not found under ${root}`);
}

const INIT = `#!/bin/busybox sh
# initramfs stage: load the 9p modules, mount the host's root read-only and the project
# read-write, then switch_root (a chroot would make unshare(CLONE_NEWUSER) fail with EPERM).
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
fail() { echo "tsrun-vm: $*"; echo "tsrun-vm-exit 99"; printf '\\143' | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null; poweroff -f; }
for m in ${MODULES.join(' ')}; do insmod /modules/$m.ko || fail "insmod $m"; done
mkdir -p /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000 hostroot /newroot || fail "mount hostroot"
mount -t 9p -o trans=virtio,version=9p2000.L,cache=none,msize=512000 project "/newroot$tsrun_project" || fail "mount project"
umount /proc /sys /dev
exec switch_root /newroot /bin/sh "$tsrun_project/test/vm/guest-stage2.sh" "$@"
`;

/** A cpio initramfs with busybox, the 9p modules and the init above; rebuilt when they change. */
export function ensureInitramfs(kernel: { modules: string; version: string }): string {
  const key = createHash('sha256').update(INIT).update(kernel.version).digest('hex').slice(0, 12);
  const out = join(CACHE, `initramfs-${key}.cpio`);
  if (existsSync(out)) return out;
  const root = join(CACHE, `initramfs-${key}`);
  rmSync(root, { recursive: true, force: true });
  for (const d of ['bin', 'proc', 'sys', 'dev', 'modules', 'newroot']) mkdirSync(join(root, d), { recursive: true });
  copyFileSync('/bin/busybox', join(root, 'bin/busybox'));
  chmodSync(join(root, 'bin/busybox'), 0o755);
  for (const m of MODULES) copyFileSync(join(kernel.modules, `${m}.ko`), join(root, 'modules', `${m}.ko`));
  writeFileSync(join(root, 'init'), INIT, { mode: 0o755 });
  // no cpio binary on these hosts: busybox has one
  sh('sh', ['-c', `cd '${root}' && find . | /bin/busybox cpio -o -H newc > '${out}.tmp' 2>/dev/null && mv '${out}.tmp' '${out}'`]);
  rmSync(root, { recursive: true, force: true });
  return out;
}

/**
 * The built-in busybox image's root as a tar, built on the host for the in-guest `tsrun run`:
 * ~300 fork+execs of build-busybox.sh, or a cp of 300 files over 9p, take many seconds under
 * TCG; unpacking one file does not.
 */
export function ensureBusyboxImage(): string {
  const tar = join(CACHE, 'busybox-rootfs.tar');
  if (!existsSync(tar)) {
    const dir = join(CACHE, `busybox-rootfs-${process.pid}`);
    rmSync(dir, { recursive: true, force: true });
    try {
      sh('sh', [join(PROJECT, 'rootfs/build-busybox.sh'), dir]);
      sh('tar', ['-C', dir, '-cf', `${tar}.tmp`, '.']);
      sh('mv', [`${tar}.tmp`, tar]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  return tar;
}

export interface GuestResult {
  /** the script's exit code as the guest reported it through isa-debug-exit; null: guest crashed */
  code: number | null;
  output: string;
  ms: number;
}

/**
 * Boots the guest and runs `script` (a path inside the project) as root with cgroup2 at
 * /sys/fs/cgroup. TCG only: KVM hangs on these hosts (cgroup-v2-vm.md).
 */
export function runGuest(script: string, opts: { timeoutMs?: number; memMB?: number; cpus?: number; /** extra kernel parameters (e.g. an LSM choice; name=value ones reach the guest's environment) */ append?: string } = {}): Promise<GuestResult> {
  ensureTools();
  const kernel = ensureKernel();
  const initrd = ensureInitramfs(kernel);
  ensureBusyboxImage();
  const args = [
    '-accel', 'tcg,thread=multi', '-m', String(opts.memMB ?? 1024), '-smp', String(opts.cpus ?? 2),
    '-kernel', kernel.vmlinuz, '-initrd', initrd,
    // unknown name=value parameters reach init as environment; words after -- as its argv
    '-append', `console=ttyS0 quiet loglevel=3 panic=-1 rdinit=/init ${opts.append ? `${opts.append} ` : ''}tsrun_project=${PROJECT} -- ${script}`,
    '-virtfs', 'local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap',
    '-virtfs', `local,path=${PROJECT},mount_tag=project,security_model=none,multidevs=remap`,
    '-device', 'isa-debug-exit,iobase=0xf4,iosize=0x04',
    '-nodefaults', '-no-reboot', '-display', 'none', '-serial', 'stdio', '-monitor', 'none',
  ];
  const t0 = Date.now();
  return new Promise((resolveRun, reject) => {
    const q = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    q.stdout.on('data', (d: Buffer) => (output += d.toString()));
    q.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => q.kill('SIGKILL'), opts.timeoutMs ?? 240_000);
    q.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    q.on('exit', (status, signal) => {
      clearTimeout(timer);
      const ms = Date.now() - t0;
      if (signal) return resolveRun({ code: null, output: `${output}\n[qemu killed by ${signal} after ${ms} ms]`, ms });
      // isa-debug-exit: QEMU exits (code << 1) | 1; an even status is a poweroff/panic
      resolveRun({ code: status !== null && status % 2 === 1 ? status >> 1 : null, output, ms });
    });
  });
}


/**
 * A binary SELinux policy for the guest: Debian's refpolicy (selinux-policy-default) plus
 * tsrun's test module (test/vm/selinux/tsrun.te: container_t, container_file_t, MCS), built on
 * the host into the cache with the refpolicy headers (selinux-policy-dev) and `semodule -p`, so
 * the host's own /etc/selinux and /var/lib/selinux are only read. Returns its path; the guest
 * loads it with one write to /sys/fs/selinux/load (selinuxfs takes the policy in one write).
 */
export function ensureSelinuxPolicy(): string {
  const src = join(PROJECT, 'test/vm/selinux/tsrun.te');
  const key = createHash('sha256').update(readFileSync(src)).digest('hex').slice(0, 12);
  const dir = join(CACHE, `selinux-${key}`);
  const policy = join(dir, 'root/etc/selinux/default/policy/policy.33');
  if (existsSync(policy)) return policy;
  if (!existsSync('/usr/share/selinux/devel/Makefile') || !existsSync('/var/lib/selinux/default') || !have('semodule')) {
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    const pkgs = ['selinux-policy-default', 'selinux-policy-dev', 'semodule-utils', 'policycoreutils'];
    const r = spawnSync('apt-get', ['install', '-y', '--no-install-recommends', ...pkgs], { encoding: 'utf8', env });
    if (r.status !== 0) throw new Error(`apt-get install ${pkgs.join(' ')} failed: ${r.stderr}`);
  }
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, 'build'), { recursive: true });
  copyFileSync(src, join(dir, 'build/tsrun.te'));
  writeFileSync(join(dir, 'build/tsrun.fc'), '');
  writeFileSync(join(dir, 'build/tsrun.if'), '');
  sh('make', ['-s', '-f', '/usr/share/selinux/devel/Makefile', 'tsrun.pp'], { cwd: join(dir, 'build') });
  mkdirSync(join(dir, 'root/var/lib'), { recursive: true });
  mkdirSync(join(dir, 'root/etc'), { recursive: true });
  sh('cp', ['-a', '/var/lib/selinux', join(dir, 'root/var/lib/')]);
  sh('cp', ['-a', '/etc/selinux', join(dir, 'root/etc/')]);
  sh('semodule', ['-p', join(dir, 'root'), '-i', join(dir, 'build/tsrun.pp')]);
  if (!existsSync(policy)) throw new Error(`semodule -p left no ${policy}`);
  return policy;
}
