import { readFileSync } from 'node:fs';
import { posix } from 'node:path';
import { parent } from '../plan/step.js';
import type { BuildContext, Control } from '../plan/types.js';
import { isBind } from './mounts.js';

// /etc/hostname, /etc/hosts and /etc/resolv.conf are written by tsrun into the container's
// own directory and bind-mounted, as docker does: the image is never edited, and the host's
// files are never exposed (only a copy of resolv.conf's content).
export const ETC_FILES = ['hostname', 'hosts', 'resolv.conf'] as const;

// With a network (--network NAME) the hostname's line is the container's address, appended
// by the network control once CNI has allocated it, instead of 127.0.1.1.
export function etcFileContent(name: (typeof ETC_FILES)[number], hostname: string, hostResolv: string, hostNetwork: boolean, attached = false, etc: BuildContext['etc'] = undefined): string {
  switch (name) {
    case 'hostname':
      return `${hostname}\n`;
    case 'hosts':
      return [
        '127.0.0.1\tlocalhost',
        '::1\tlocalhost ip6-localhost ip6-loopback',
        'fe00::0\tip6-localnet',
        'ff00::0\tip6-mcastprefix',
        'ff02::1\tip6-allnodes',
        'ff02::2\tip6-allrouters',
        ...(attached ? [] : [`127.0.1.1\t${hostname}`]),
        // --add-host, as docker writes them: IP, tab, name
        ...(etc?.addHosts ?? []).map((h) => `${h.slice(h.indexOf(':') + 1)}\t${h.slice(0, h.indexOf(':'))}`),
        '',
      ].join('\n');
    case 'resolv.conf':
      // --dns/--dns-search replace the host's servers or search list, as docker's do
      if (etc?.dns.length || etc?.dnsSearch.length) {
        const keep = hostResolv.split('\n').filter((l) => l.trim() && !(etc.dns.length && /^\s*nameserver\b/.test(l)) && !(etc.dnsSearch.length && /^\s*(search|domain)\b/.test(l)));
        return [...(etc.dnsSearch.length ? [`search ${etc.dnsSearch.join(' ')}`] : []), ...etc.dns.map((d) => `nameserver ${d}`), ...keep, ''].join('\n');
      }
      // A loopback resolver of the host is unreachable from a private network namespace.
      return hostNetwork
        ? hostResolv
        : hostResolv
            .split('\n')
            .filter((l) => !/^\s*nameserver\s+(127\.|::1\b)/.test(l))
            .join('\n');
  }
}

export const control: Control = {
  id: 'etc-files',
  title: 'Generated /etc/hostname, /etc/hosts, /etc/resolv.conf',
  steps(ctx) {
    const hostNetwork = !ctx.spec.linux.namespaces.some((n) => n.type === 'network');
    return (ctx.spec.mounts ?? [])
      .filter((m) => isBind(m) && m.source && posix.dirname(m.source) === ctx.containerDir)
      .flatMap((m) => {
        const name = posix.basename(m.source!) as (typeof ETC_FILES)[number];
        if (!ETC_FILES.includes(name)) return [];
        return [
          parent(
            'prepare',
            'etc-files',
            `content of the container's /etc/${name}`,
            { action: 'write-file', path: m.source!, content: etcFileContent(name, ctx.spec.hostname ?? '', readHostResolv(), hostNetwork, Boolean(ctx.network), ctx.etc), mode: 0o644 },
            `write ${m.source}`,
          ),
        ];
      });
  },
};

function readHostResolv(): string {
  try {
    return readFileSync('/etc/resolv.conf', 'utf8');
  } catch {
    return '';
  }
}
