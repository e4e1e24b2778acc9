import { join } from 'node:path';

/**
 * Where tsrun keeps things. State (small, gone at reboot like the containers) lives on
 * tmpfs under --root, as runc's /run/runc; images and container layers under the data
 * directory, as docker's /var/lib/docker. Both overridable, so tests run isolated.
 */
export interface Paths {
  root: string;
  data: string;
}

export function defaultPaths(env: Record<string, string | undefined> = process.env): Paths {
  return { root: env.TSRUN_ROOT || '/run/tsrun', data: env.TSRUN_DATA || '/var/lib/tsrun' };
}

export const containerDir = (p: Paths, id: string) => join(p.data, 'containers', id);
export const stateDir = (p: Paths, id: string) => join(p.root, id);
export const imagesDir = (p: Paths) => join(p.data, 'images');
