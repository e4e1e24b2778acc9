// `tsrun update` (runc's verb): new resource limits for a live container, written into the
// cgroup it already has. containerd's runc shim calls `update --resources -` with the OCI
// LinuxResources JSON on stdin (that is how `docker update` and a Kubernetes resize reach the
// runtime); runc's flags (--memory, --pids-limit ...) fill the same structure.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { StateError } from '../errors.js';
import { mapResources } from '../controls/cgroups/resources.js';
import { hostLayout } from '../controls/cgroups/mode.js';
import { targetsFromSteps, writeCgroupFile } from '../controls/cgroups/manager.js';
import type { Resources } from '../spec/types.js';
import type { Paths } from './paths.js';
import { resolve } from './lifecycle.js';
import { saveState, statusOf, withLock } from './state.js';

/**
 * The fields of `next` override those of `prev`, one level deep (memory.limit alone keeps
 * memory.swap), as runc's update does. Device rules are not updated: runc's update leaves
 * them as created too, and rewriting a v1 device cgroup starts with `deny a`, which would
 * cut a running process off /dev/null for a moment.
 */
export function mergeResources(prev: Resources | undefined, next: Resources): Resources {
  const out: Resources = { ...prev };
  for (const [k, v] of Object.entries(next) as [keyof Resources, unknown][]) {
    if (k === 'devices' || v === undefined) continue;
    const old = out[k] as unknown;
    (out as Record<string, unknown>)[k] = v && typeof v === 'object' && !Array.isArray(v) && old && typeof old === 'object' && !Array.isArray(old) ? { ...old, ...v } : v;
  }
  return out;
}

export async function updateContainer(paths: Paths, ref: string, next: Resources, warn: (m: string) => void = () => undefined): Promise<void> {
  const s = resolve(paths, ref);
  await withLock(paths, s.id, () => {
    const st = statusOf(s);
    if (st === 'stopped') throw new StateError(`container ${s.name ?? s.id.slice(0, 12)} is stopped: there is no cgroup to update`);
    const layout = hostLayout();
    const targets = targetsFromSteps(layout, s.cleanup);
    // only the fields given are written; mapResources validates them as create would
    const { devices: _ignored, ...delta } = next;
    const { writes, warnings } = mapResources(delta, layout);
    for (const w of warnings) warn(w);
    for (const w of writes) {
      const h = layout.controllers[w.controller] ?? (w.controller === 'unified' ? layout.unified : undefined);
      const t = targets.find((x) => x.hierarchy === h);
      if (!t) throw new StateError(`${w.field}: the container has no cgroup in the ${w.controller} hierarchy (it was created without one)`);
      const file = join(t.dir, w.file);
      if (w.optional && !existsSync(file)) {
        warn(w.optional);
        continue;
      }
      writeCgroupFile(file, w.value);
    }
    s.config.linux.resources = mergeResources(s.config.linux.resources, next);
    saveState(paths, s);
  });
}
