import * as op from '../plan/ops.js';
import { child } from '../plan/step.js';
import type { Control, Step } from '../plan/types.js';
import { hasNamespace } from './namespaces.js';
import { SpecError } from '../errors.js';
import { quoteValue } from '../spec/quote.js';

// Hostname (UTS namespace) and the loopback device of a new network namespace, which the
// kernel creates down (network_namespaces(7)).
export const control: Control = {
  id: 'uts-net',
  title: 'Hostname and loopback network',
  ref: 'CIS 5.9 (do not share the host network namespace)',
  validate(ctx) {
    // Without a UTS namespace of its own (or one it joins) the container shares the host's:
    // sethostname would rename the host, so runc refuses this too; skipping it would start a
    // container whose hostname is not the one asked for.
    if (ctx.spec.linux.namespaces.some((n) => n.type === 'uts')) return;
    for (const k of ['hostname', 'domainname'] as const) {
      const v = ctx.spec[k];
      if (v) throw new SpecError(k, `${quoteValue(v)} needs a UTS namespace: add {"type": "uts"} to linux.namespaces, or drop ${k} to keep the host's`);
    }
  },
  steps(ctx) {
    const steps: Step[] = [];
    // A joined UTS namespace (a pod's, by path) keeps the name its maker gave it: tsrun does
    // not rename a namespace it did not create (that path could be the host's own).
    if (hasNamespace(ctx, 'uts')) {
      if (ctx.spec.hostname) steps.push(child('system', 'uts-net', 'own hostname in the UTS namespace', op.sethostname(ctx.spec.hostname)));
      if (ctx.spec.domainname) steps.push(child('system', 'uts-net', 'own NIS domain name in the UTS namespace', op.setdomainname(ctx.spec.domainname)));
    }
    if (hasNamespace(ctx, 'network')) {
      steps.push(child('system', 'uts-net', 'a new network namespace starts with lo down; 127.0.0.1 works once it is up', op.loopbackUp()));
    }
    return steps;
  },
};
