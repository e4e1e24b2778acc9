import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { StateError, TsrunError } from '../errors.js';
import { PROJECT_ROOT } from '../kernel/native.js';
import type { ImageConfig, ImageStore, ResolvedImage } from './types.js';

// A directory per image (<data>/images/<name>/{rootfs,config.json}); the built-in busybox
// image is built into it on first use by rootfs/build-busybox.sh from the host's static
// busybox, so the first `tsrun run busybox ...` needs no network.

export const BUILTIN = 'busybox';
const BUILTIN_CONFIG: ImageConfig = { Cmd: ['sh'], Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], WorkingDir: '/' };

function canonical(ref: string): string {
  return ref.endsWith(':latest') ? ref.slice(0, -':latest'.length) : ref;
}

export class LocalStore implements ImageStore {
  constructor(readonly dir: string) {}

  async resolve(ref: string): Promise<ResolvedImage> {
    const name = canonical(ref);
    if (name === BUILTIN) this.ensureBuiltin();
    const dir = join(this.dir, encodeURIComponent(name));
    if (!existsSync(join(dir, 'config.json'))) {
      const local = (await this.list()).map((i) => i.name);
      throw new StateError(`unknown image ${JSON.stringify(ref)}: local images: ${local.length ? local.join(', ') : '(none)'}; the built-in one is "busybox"`);
    }
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as ImageConfig;
    return { name, id: `local:${name}`, layers: [join(dir, 'rootfs')], config };
  }

  async list(): Promise<{ name: string; id: string }[]> {
    const names = existsSync(this.dir) ? readdirSync(this.dir).map(decodeURIComponent) : [];
    if (!names.includes(BUILTIN)) names.push(BUILTIN);
    return names.sort().map((name) => ({ name, id: `local:${name}` }));
  }

  /** Adds an image made of a plain root filesystem directory (tests use it for the probe image). */
  importDir(name: string, build: (rootfs: string) => void, config: ImageConfig): void {
    const dir = join(this.dir, encodeURIComponent(canonical(name)));
    const tmp = `${dir}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(join(tmp, 'rootfs'), { recursive: true });
    try {
      build(join(tmp, 'rootfs'));
      writeFileSync(join(tmp, 'config.json'), JSON.stringify(config, null, 2));
      rmSync(dir, { recursive: true, force: true });
      renameSync(tmp, dir); // atomic: a concurrent run sees the whole image or none
    } catch (e) {
      rmSync(tmp, { recursive: true, force: true });
      throw e;
    }
  }

  ensureBuiltin(): void {
    if (existsSync(join(this.dir, BUILTIN, 'config.json'))) return;
    const script = join(PROJECT_ROOT, 'rootfs', 'build-busybox.sh');
    this.importDir(
      BUILTIN,
      (rootfs) => {
        try {
          execFileSync('/bin/sh', [script, rootfs], { stdio: ['ignore', 'ignore', 'pipe'] });
        } catch (e) {
          const stderr = String((e as { stderr?: Buffer }).stderr ?? '').trim();
          throw new TsrunError(`cannot build the built-in busybox image: ${stderr || (e as Error).message}`, { cause: e });
        }
      },
      BUILTIN_CONFIG,
    );
  }
}
