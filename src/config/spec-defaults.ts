// What a container built from flags gets before any flag is applied: docker's defaults for
// the privilege controls, then the host-wide config file's defaults. Bundles (config.json)
// get neither: an OCI bundle states its whole policy, as with runc.
import type { Spec } from '../spec/types.js';
import { UsageError } from '../errors.js';
import { DOCKER_DEFAULT_CAPS, capsFor } from '../controls/capabilities.js';
import { DEFAULT_DEVICE_RULES } from '../controls/devices.js';
import { applySecurityOptSystemPaths, defaultMaskedPaths, defaultReadonlyPaths } from '../controls/masked-paths.js';
import { applySecurityOptNnp } from '../controls/nnp.js';
import { applyMacSecurityOpt, setAppArmorDefault, setSelinuxDefault } from '../controls/mac.js';
import { setSeccompDefault } from '../controls/seccomp/index.js';
import { applyConfigDefaults, type TsrunConfig } from './index.js';

export function applyBaseDefaults(spec: Spec): void {
  spec.process.capabilities = capsFor(DOCKER_DEFAULT_CAPS);
  spec.linux.maskedPaths = defaultMaskedPaths();
  spec.linux.readonlyPaths = defaultReadonlyPaths();
  spec.linux.resources = { ...spec.linux.resources, devices: DEFAULT_DEVICE_RULES.map((r) => ({ ...r })) };
  setSeccompDefault(spec);
  setAppArmorDefault(spec);
  setSelinuxDefault(spec);
}

/** The parsed options that decide whether the config's userns-remap applies. */
export interface RemapOverride {
  userns?: unknown;
  usernsRemap?: unknown;
  /** explain / --dry-run: the default remap user is projected, not created */
  planOnly?: boolean;
}

/** Base defaults, then the config file; the flags applied afterwards override both. */
export function applyDefaults(spec: Spec, cfg: TsrunConfig, opts: RemapOverride = {}): void {
  applyBaseDefaults(spec);
  // --userns host / --userns-remap X replace the config's remap: do not create or
  // resolve the config's user at all then.
  const c = opts.userns !== undefined || opts.usernsRemap !== undefined ? { ...cfg, 'userns-remap': undefined } : cfg;
  applyConfigDefaults(spec, c, undefined, Boolean(opts.planOnly));
  setSeccompDefault(spec, cfg['seccomp-profile']);
}

/**
 * The privilege forms of `--security-opt` (docker's syntax: `name`, `name=value`, or the
 * old `name:value`). Returns false for forms other controls own (seccomp, label, apparmor).
 */
export function applyPrivilegeSecurityOpt(spec: Spec, opt: string): boolean {
  const m = /^([a-z-]+)(?:[=:](.*))?$/.exec(opt.trim());
  if (!m) throw new UsageError(`--security-opt ${JSON.stringify(opt)}: expected NAME[=VALUE]`);
  const [, name, value] = m as unknown as [string, string, string | undefined];
  if (name === 'no-new-privileges') {
    applySecurityOptNnp(spec, value);
    return true;
  }
  if (name === 'systempaths') {
    applySecurityOptSystemPaths(spec, value ?? '');
    return true;
  }
  if (name === 'label' || name === 'apparmor') {
    applyMacSecurityOpt(spec, name, value, opt);
    return true;
  }
  return false;
}
