// The embedded default model: kvc-nano, shipped inside the project (and inside the
// single binary, which registers where it wrote its copy out).
import { fileURLToPath } from "node:url";

let embedded: (() => string) | null = null;

/** The single binary's kvc-nano: a function that writes it out and returns its folder. */
export function useEmbeddedModel(dir: () => string) {
  embedded = dir;
}

export function defaultModelDir(): string {
  return embedded ? embedded() : fileURLToPath(new URL("../models/kvc-nano", import.meta.url));
}
