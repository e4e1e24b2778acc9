import * as op from '../plan/ops.js';
import { child } from '../plan/step.js';
import type { Control, Step } from '../plan/types.js';
import { hasNamespace } from './namespaces.js';

// Hostname (UTS namespace) and the loopback device of a new network namespace, which the
// kernel creates down (network_namespaces(7)).
export const control: Control = {
  id: 'uts-net',
  title: 'Hostname and loopback network',
  ref: 'CIS 5.9 (do not share the host network namespace)',
  steps(ctx) {
    const steps: Step[] = [];
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
