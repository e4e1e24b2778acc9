import { UsageError } from '../errors.js';

// Image references as docker reads them (the distribution project's reference grammar):
//   [REGISTRY[:PORT]/]PATH[:TAG][@DIGEST]
// The first component is a registry only if it has a '.' or a ':' or is `localhost`;
// otherwise the image is on Docker Hub (docker.io), where one-component names live
// under `library/`. No tag and no digest means `:latest`.

export const DOCKER_HUB = 'docker.io';

export interface Reference {
  registry: string;
  /** repository path, e.g. library/alpine */
  repository: string;
  tag?: string;
  digest?: string;
}

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^sha256:[a-f0-9]{64}$|^sha512:[a-f0-9]{128}$/;
const REGISTRY = /^(?:localhost|[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:]+\])(?::[0-9]{1,5})?$/;

export function parseReference(input: string): Reference {
  const bad = (why: string): never => {
    throw new UsageError(`invalid image reference ${JSON.stringify(input)}: ${why}`);
  };
  if (!input) bad('empty');
  if (input.length > 255 + 128 + 140) bad('too long');
  let rest = input;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) bad(`digest ${JSON.stringify(digest)} is not sha256:<64 hex digits>`);
  }
  let tag: string | undefined;
  const slash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > slash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) bad(`tag ${JSON.stringify(tag)}: letters, digits, '_', '.', '-' (at most 128, not starting with '.' or '-')`);
  }
  let registry = DOCKER_HUB;
  const parts = rest.split('/');
  const first = parts[0]!;
  if (parts.length > 1 && (first.includes('.') || first.includes(':') || first === 'localhost')) {
    if (!REGISTRY.test(first)) bad(`registry ${JSON.stringify(first)} is not a host[:port]`);
    registry = first;
    parts.shift();
  }
  if (parts.length === 0 || parts.some((p) => p === '')) bad('empty path component');
  for (const p of parts) {
    if (/[A-Z]/.test(p)) bad('repository names must be lowercase');
    if (!COMPONENT.test(p)) bad(`path component ${JSON.stringify(p)}: lowercase letters and digits, separated by '.', '_', '__' or '-'`);
  }
  if (registry === 'index.docker.io' || registry === 'registry-1.docker.io') registry = DOCKER_HUB;
  if (registry === DOCKER_HUB && parts.length === 1) parts.unshift('library');
  const repository = parts.join('/');
  if (repository.length > 255) bad('repository name longer than 255 characters');
  if (!tag && !digest) tag = 'latest';
  return { registry, repository, ...(tag ? { tag } : {}), ...(digest ? { digest } : {}) };
}

/** The repository with its registry: docker.io/library/alpine */
export function repoName(r: Reference): string {
  return `${r.registry}/${r.repository}`;
}

/** Full form: docker.io/library/alpine:3.20 or …@sha256:… */
export function canonicalName(r: Reference): string {
  return `${repoName(r)}${r.tag ? `:${r.tag}` : ''}${r.digest ? `@${r.digest}` : ''}`;
}

/** What docker prints: alpine:3.20, user/app:1, localhost:5000/x:y */
export function familiarRepo(repo: string): string {
  if (repo.startsWith(`${DOCKER_HUB}/library/`)) return repo.slice(DOCKER_HUB.length + 9);
  if (repo.startsWith(`${DOCKER_HUB}/`)) return repo.slice(DOCKER_HUB.length + 1);
  return repo;
}

export function familiarName(r: Reference): string {
  return `${familiarRepo(repoName(r))}${r.tag ? `:${r.tag}` : ''}${r.digest ? `@${r.digest}` : ''}`;
}

/** Splits a stored tagged name (repo:tag) back into repo and tag. */
export function splitTagged(name: string): { repo: string; tag: string } {
  const i = name.lastIndexOf(':');
  const j = name.lastIndexOf('/');
  return i > j ? { repo: name.slice(0, i), tag: name.slice(i + 1) } : { repo: name, tag: 'latest' };
}

/** The registry host to contact: Docker Hub's API lives on registry-1.docker.io. */
export function registryHost(registry: string): string {
  return registry === DOCKER_HUB ? 'registry-1.docker.io' : registry;
}
