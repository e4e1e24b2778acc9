// `tsrun pull`: its own module, so that the pull-only entry (pull-main.ts, which bin/tsrun
// runs for `tsrun pull`) loads no more of the CLI than a pull needs: a pull runs for seconds
// and its peak memory counts (issue 16.3, docs/images.md "Memory of a pull").
import { writeSync } from 'node:fs';
import type { Command } from 'commander';
import { UsageError } from '../errors.js';
import { LocalStore } from '../image/local-store.js';
import { progressReporter, pull, type PullOptions } from '../image/pull.js';
import { familiarTagged } from '../image/store.js';
import type { ClientOptions } from '../image/registry.js';
import { imagesDir, type Paths } from '../runtime/paths.js';
import { loadConfig, type LoadedConfig } from '../config/index.js';

const out = (s: string) => writeSync(1, s);

export function storeOf(paths: Paths): LocalStore {
  return new LocalStore(imagesDir(paths));
}

export function collect(v: string, prev: string[] = []): string[] {
  return [...prev, v];
}

export function parsePlatform(v: string | undefined): PullOptions['platform'] {
  if (!v) return undefined;
  const [os, architecture, variant] = v.split('/');
  if (!os || !architecture) throw new UsageError(`--platform ${JSON.stringify(v)}: expected os/arch[/variant], e.g. linux/amd64`);
  return { os, architecture, ...(variant ? { variant } : {}) };
}

export function insecureList(flags: string[] | undefined, env = process.env): string[] {
  const list = [...(flags ?? []), ...(env.TSRUN_INSECURE_REGISTRIES ?? '').split(',').filter(Boolean)];
  for (const h of list) if (!/^[A-Za-z0-9.\-[\]:]+$/.test(h)) throw new UsageError(`--insecure-registry ${JSON.stringify(h)}: expected HOST:PORT`);
  return list;
}

/** What a pull needs from the flags and the config file: plain-http registries and Hub mirrors. */
export function registryOptions(flags: string[] | undefined, cfg: LoadedConfig, env = process.env): Pick<ClientOptions, 'insecure' | 'mirrors' | 'configPath'> {
  return { insecure: [...insecureList(flags, env), ...(cfg.config['insecure-registries'] ?? [])], mirrors: cfg.config['registry-mirrors'] ?? [], configPath: cfg.path };
}

async function pullVerb(ref: string, o: { insecureRegistry?: string[]; platform?: string; quiet?: boolean; config?: string }, paths: Paths): Promise<number> {
  const store = storeOf(paths);
  const progress = o.quiet ? undefined : progressReporter(1, Boolean(process.stdout.isTTY));
  const platform = parsePlatform(o.platform);
  const rec = await pull(store, ref, { ...registryOptions(o.insecureRegistry, loadConfig(o.config)), ...(progress ? { progress } : {}), ...(platform ? { platform } : {}) });
  if (o.quiet) out(`${rec.names[0] ? familiarTagged(rec.names[0]) : rec.digest}\n`);
  return 0;
}

export function addPullCommand(c: Command, paths: () => Paths, setExit: (code: number) => void): Command {
  return (
    c
      .description('pull an image from a registry (OCI distribution API)')
      .argument('<image>', 'NAME[:TAG|@DIGEST], e.g. alpine, alpine:3.20, localhost:5000/app@sha256:…')
      .option('--insecure-registry <host:port>', 'use plain http for this registry (repeatable; meant for loopback)', collect)
      .option('--platform <os/arch>', 'the platform to pick from an image index (default: this host)')
      .option('--config <file>', 'host-wide config: its "registry-mirrors" and "insecure-registries" (default /etc/tsrun/config.json, or $TSRUN_CONFIG)')
      .option('-q, --quiet', 'no progress; print the image name')
      .action(async (ref: string, o) => setExit(await pullVerb(ref, o, paths())))
  );
}
