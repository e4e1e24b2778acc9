import type { Descriptor } from './store.js';

// The OCI platform of this host, and the choice of its manifest in an image index. Used by
// both `pull` and `import` (an OCI layout's index), so it lives apart from both: pull.ts
// imports builtin.ts, which imports import.ts (issue 16: no import cycle in src/image).

/** Node's arch names → the OCI platform's (image-spec config "architecture") */
export function hostPlatform(): { os: string; architecture: string; variant?: string } {
  const a: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };
  const architecture = a[process.arch] ?? process.arch;
  return { os: 'linux', architecture, ...(architecture === 'arm64' ? { variant: 'v8' } : {}) };
}

/** Picks this platform's manifest from an image index / manifest list. */
export function pickPlatform(manifests: Descriptor[], want = hostPlatform()): Descriptor | undefined {
  const cands = manifests.filter((m) => m.platform?.os === want.os && m.platform?.architecture === want.architecture);
  return cands.find((m) => !want.variant || !m.platform?.variant || m.platform.variant === want.variant) ?? cands[0];
}
