import { SpecError } from '../errors.js';
import { parent } from '../plan/step.js';
import type { Control, Step } from '../plan/types.js';
import { posix } from 'node:path';
import { cniConfig, portmapConfig } from '../network/types.js';
import { formatMapping } from '../network/ports.js';
import { hasNamespace } from './namespaces.js';

// User-defined bridge networks (docs/networks.md). The container's own network namespace
// (namespaces control) gets one end of a veth pair as eth0; the other end becomes a port
// of the network's Linux bridge on the host. Both are made by the CNI bridge plugin, called
// by tsrun after the clone (the netns exists) and before GO (the command sees eth0 from
// its first instruction). The workshop's control 2.1 ("restringir red bridge entre
// contenedores", enable_icc=false) is the bridge port isolation step.
export const control: Control = {
  id: 'network',
  title: 'User-defined bridge networks and inter-container isolation (icc=false)',
  ref: 'workshop control 2.1 (separate networks, enable_icc=false); CIS 2.1 (restrict network traffic between containers on the default bridge)',
  validate(ctx) {
    if (ctx.network && !hasNamespace(ctx, 'network'))
      throw new SpecError('linux.namespaces', `--network ${ctx.network.def.name} needs the container's own network namespace (it shares one: --network host or a namespace path)`);
  },
  steps(ctx) {
    const a = ctx.network;
    if (!a) return [];
    const { def } = a;
    const steps: Step[] = [];
    steps.push(
      parent(
        'prepare',
        'network',
        `the host side of network ${def.name}: a Linux bridge holding the gateway address${def.internal ? '' : ', and the masquerade of what leaves the subnet'} (remade if the host rebooted)`,
        { action: 'network-bridge', name: def.name, bridge: def.bridge, subnet: def.subnet, gateway: def.gateway, internal: def.internal },
        `ip link add name ${def.bridge} type bridge; ip addr add ${def.gateway}/${def.subnet.split('/')[1]} dev ${def.bridge}; ip link set ${def.bridge} up` + (def.internal ? '' : `; iptables -t nat -A POSTROUTING -s ${def.subnet} ! -o ${def.bridge} -j MASQUERADE`) + '   (if missing)',
      ),
    );
    const config = cniConfig(a);
    const common = { plugin: 'bridge', cniPath: a.cniPath, containerId: ctx.id, ifname: 'eth0', config };
    const hostsFile = (ctx.spec.mounts ?? []).find((m) => m.destination === '/etc/hosts' && m.source?.startsWith(ctx.containerDir + '/'))?.source;
    const netDir = posix.dirname(a.ipamDir);
    steps.push(
      parent(
        'after-clone',
        'network',
        `attach to network ${def.name} (${def.subnet}): a veth pair, eth0 in the container's netns with an address from host-local, the other end a port of bridge ${def.bridge}; ` +
          (def.internal ? 'internal: no route or NAT beyond the subnet' : `a default route through ${def.gateway}, and what leaves the subnet is masqueraded to the host's address (iptables nat, docker's default)`),
        { action: 'cni', command: 'ADD', ...common },
        `CNI_COMMAND=ADD CNI_CONTAINERID=${ctx.id.slice(0, 12)}… CNI_NETNS=/proc/<pid>/ns/net CNI_IFNAME=eth0 CNI_PATH=${a.cniPath} ${a.cniPath}/bridge < {bridge ${def.bridge}, ipam host-local ${def.subnet}${a.ip ? ` ip ${a.ip}` : ''}${def.internal ? '' : ', isGateway, ipMasq'}}`,
      ),
    );
    if (!def.icc) {
      steps.push(
        parent(
          'after-clone',
          'network',
          `icc=false: the bridge never forwards between two isolated ports (BR_ISOLATED, Linux 4.18), so containers of ${def.name} cannot reach each other; the gateway (the bridge itself) stays reachable`,
          { action: 'bridge-port', containerId: ctx.id, isolated: true },
          `bridge link set dev <host-side veth of eth0> isolated on`,
        ),
      );
    }
    const ports = a.ports ?? [];
    const portmap = { plugin: 'portmap', cniPath: a.cniPath, containerId: ctx.id, ifname: 'eth0', config: portmapConfig(def, ports) };
    if (ports.length) {
      steps.push(
        parent(
          'after-clone',
          'network',
          `publish ${ports.map(formatMapping).join(', ')}: DNAT from the host's port to the container's address (iptables nat, chains CNI-HOSTPORT-DNAT and CNI-DN-…); CIS 5.13 (v1.2.0): bind to one host address, e.g. -p 127.0.0.1:8080:80`,
          { action: 'cni', command: 'ADD', ...portmap },
          `CNI_COMMAND=ADD … ${a.cniPath}/portmap < {runtimeConfig.portMappings ${JSON.stringify(ports)}, prevResult: bridge's}`,
        ),
      );
    }
    if (hostsFile) {
      steps.push(
        parent(
          'after-clone',
          'network',
          `names on ${def.name}: this container's address as ${a.hostnames.join(', ')} in every member's /etc/hosts, and theirs in its own (docker resolves them with a DNS server in dockerd; tsrun has no daemon)`,
          { action: 'network-names', command: 'join', netDir, network: def.name, containerId: ctx.id, hostsFile, names: a.hostnames },
          `rewrite the "# network ${def.name}" section of each member's hosts file`,
        ),
      );
    }
    // cleanup in the reverse order: names, port rules, then the address
    if (hostsFile) {
      steps.push(
        parent(
          'cleanup',
          'network',
          `the other members of ${def.name} forget this container's names`,
          { action: 'network-names', command: 'leave', netDir, network: def.name, containerId: ctx.id },
          `rewrite the "# network ${def.name}" section of each remaining member's hosts file`,
        ),
      );
    }
    if (ports.length) {
      steps.push(
        parent(
          'cleanup',
          'network',
          `remove the published ports' DNAT rules`,
          { action: 'cni', command: 'DEL', ...portmap },
          `CNI_COMMAND=DEL CNI_CONTAINERID=${ctx.id.slice(0, 12)}… ${a.cniPath}/portmap < {…same config}`,
        ),
      );
    }
    steps.push(
      parent(
        'cleanup',
        'network',
        `release the container's address on ${def.name} (host-local)${def.internal ? '' : ' and its masquerade rule'}; the veth pair went with the container's netns`,
        { action: 'cni', command: 'DEL', ...common },
        `CNI_COMMAND=DEL CNI_CONTAINERID=${ctx.id.slice(0, 12)}… CNI_IFNAME=eth0 ${a.cniPath}/bridge < {…same config}   (no CNI_NETNS: the netns is gone)`,
      ),
    );
    return steps;
  },
};
