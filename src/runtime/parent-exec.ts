import { chmodSync, chownSync, mkdirSync, writeFileSync, writeSync } from 'node:fs';
import { KernelError } from '../errors.js';
import { errnoOf } from '../kernel/errno.js';
import type { ParentStep } from '../plan/types.js';
import { nativeKernel } from '../kernel/native.js';
import { runCgroupAction } from '../controls/cgroups/manager.js';
import { runCniAction, runNamesAction, runPortAction } from '../network/cni.js';
import { ensureBridge } from '../network/store.js';
import { ensureAppArmorProfile, relabel } from '../controls/mac.js';
import { removeTree as removeTreeIteratively } from './remove-tree.js';

/**
 * Runs one parent-side step. `clone` and `go` are performed by the runtime itself (they
 * are the spawn and the sync message); they appear in the plan so that it is complete.
 */
export function execParentStep(step: ParentStep, pid?: number, opts: { bornInCgroup?: boolean; created?: Set<string> } = {}): void {
  try {
    switch (step.action) {
      case 'mkdir':
        mkdirSync(step.path, { recursive: true, mode: step.mode });
        return;
      case 'mkfifo':
        nativeKernel.mkfifo(step.path, step.mode);
        chmodSync(step.path, step.mode); // mkfifo(3) applies the umask
        return;
      case 'write-file':
        writeFileSync(step.path, step.content, { mode: step.mode });
        chmodSync(step.path, step.mode);
        return;
      case 'remove':
        removeTree(step.path);
        return;
      case 'chown':
        chownSync(step.path, step.uid, step.gid);
        if (step.mode !== undefined) chmodSync(step.path, step.mode);
        return;
      case 'id-map':
        writeFileSync(`/proc/${pid}/${step.file}`, step.content);
        return;
      case 'cgroup':
        runCgroupAction(step, { ...(pid !== undefined ? { pid } : {}), ...opts, warn: (m) => writeSync(2, `tsrun: warning: ${m}\n`) });
        return;
      case 'network-bridge':
        ensureBridge(step);
        return;
      case 'cni':
        runCniAction(step, pid);
        return;
      case 'bridge-port':
        runPortAction(step);
        return;
      case 'network-names':
        runNamesAction(step);
        return;
      case 'apparmor-load':
        ensureAppArmorProfile(step.profile, step.policy);
        return;
      case 'selinux-relabel':
        relabel(step.path, step.label);
        return;
      case 'clone':
      case 'go':
      case 'send-mount-fd': // sent by the runtime after GO (it needs the sync socket)
      case 'hook': // run by src/runtime/hooks.ts at its lifecycle moment, with the state on stdin
        return;
      default: {
        const unknown: never = step;
        throw new Error(`parent action ${(unknown as ParentStep).action} has no executor in this build`);
      }
    }
  } catch (e) {
    const en = errnoOf(e);
    if (en) throw new KernelError(step.text, en.errno, en.name, (e as Error).message, step.control);
    throw e;
  }
}

/**
 * rm -rf for the container's own directory, on every container exit. Its upper dir holds
 * whatever the container wrote (say, 5,000 nested directories): removal is iterative and
 * fd-relative (remove-tree.ts), so depth and PATH_MAX cannot make it fail. A mount still
 * busy (EBUSY) or a racing writer (ENOTEMPTY) is retried, as fs.rmSync's maxRetries did.
 */
function removeTree(path: string): void {
  for (let attempt = 0; ; attempt++) {
    try {
      removeTreeIteratively(path);
      return;
    } catch (e) {
      const c = ((e as Error).cause as NodeJS.ErrnoException | undefined)?.code;
      if (attempt >= 3 || (c !== 'EBUSY' && c !== 'ENOTEMPTY')) throw (e as Error).cause ?? e;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100 * (attempt + 1));
    }
  }
}
