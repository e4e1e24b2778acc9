// What the runtime needs from an image, whatever store it came from.

/** The parts of an OCI image config (`config` object) that `run` applies. */
export interface ImageConfig {
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  Env?: string[] | null;
  WorkingDir?: string;
  User?: string;
  StopSignal?: string;
  /** EXPOSE: {"80/tcp": {}}; `run -P` publishes each */
  ExposedPorts?: Record<string, unknown> | null;
  /** LABEL: a container gets them under its own --label values, as docker's */
  Labels?: Record<string, string>;
}

export interface ResolvedImage {
  /** canonical name, e.g. `busybox:latest` or `docker.io/library/alpine:3.20` */
  name: string;
  /** content digest of the manifest/config when known */
  id: string;
  /** unpacked layer directories, lowest first: overlayfs lowerdir takes them reversed */
  layers: string[];
  config: ImageConfig;
}

export interface ImageStore {
  /** throws StateError listing the local images when the reference is unknown */
  resolve(ref: string): Promise<ResolvedImage>;
  list(): Promise<{ name: string; id: string; size?: number; created?: string }[]>;
}
