// The --kv-* flags shared by generate, eval and serve: parsed into compression options.
import type { CompressionOptions } from "../src/cache/compression.ts";
import { intFlag } from "./flags.ts";

export const KV_FLAG_OPTIONS = {
  "kv-method": { type: "string" },
  "kv-rate": { type: "string" },
  "kv-max-tokens": { type: "string" },
  "kv-protected-window": { type: "string" },
  "kv-observation-window": { type: "string" },
  "kv-interval": { type: "string" },
  "kv-compress-once": { type: "boolean" },
  "kv-crush-ratio": { type: "string" },
  "kv-crush-anchor": { type: "string" },
  "kv-crush-base": { type: "string" },
  "kv-even-layers": { type: "boolean" },
} as const;

export const KV_FLAGS_HELP = `  --kv-method M              none | kvcompress | snapkv | streaming | kvcrush (default none)
  --kv-rate R                keep 1/R of the sequence's K/V entries (R >= 1)
  --kv-max-tokens N          or keep N tokens per (layer, KV head) on average
  --kv-protected-window N    most recent positions never evicted (default 32)
  --kv-observation-window N  last prompt queries that score the keys (default 8)
  --kv-interval N            decode steps between compressions (default 16)
  --kv-compress-once         compress only after the prefill
  --kv-crush-ratio X         KVCrush share of the budget for representatives, [0, 1) (default 0.25)
  --kv-crush-anchor A        KVCrush anchor: mean | alternate | random (default mean)
  --kv-crush-base B          KVCrush importance method: kvcompress | snapkv (default kvcompress)
  --kv-even-layers           KV-Compress: the same budget in every layer
`;

const METHODS = ["none", "kvcompress", "snapkv", "streaming", "kvcrush"];

export function parseKvFlags(a: Record<string, string | boolean | undefined>): Partial<CompressionOptions> {
  const o: Partial<CompressionOptions> = {};
  const s = (k: string) => a[k] as string | undefined;
  if (s("kv-method") !== undefined) {
    if (!METHODS.includes(s("kv-method")!)) throw new Error(`--kv-method must be one of ${METHODS.join(", ")} (got "${s("kv-method")}")`);
    o.method = s("kv-method") as CompressionOptions["method"];
  }
  if (s("kv-rate") !== undefined) {
    const r = Number(s("kv-rate"));
    if (!Number.isFinite(r) || r < 1) throw new Error(`--kv-rate must be a number >= 1 (got "${s("kv-rate")}")`);
    o.rate = r;
  }
  if (s("kv-max-tokens") !== undefined) o.maxCacheTokens = intFlag(s("kv-max-tokens"), "kv-max-tokens", 0, 1);
  if (s("kv-protected-window") !== undefined) o.protectedWindow = intFlag(s("kv-protected-window"), "kv-protected-window", 0, 0);
  if (s("kv-observation-window") !== undefined) o.observationWindow = intFlag(s("kv-observation-window"), "kv-observation-window", 0, 1);
  if (s("kv-interval") !== undefined) o.interval = intFlag(s("kv-interval"), "kv-interval", 0, 1);
  if (a["kv-compress-once"]) o.compressOnce = true;
  if (a["kv-even-layers"]) o.evenLayerSplit = true;
  if (s("kv-crush-ratio") !== undefined) {
    const r = Number(s("kv-crush-ratio"));
    if (!Number.isFinite(r) || r < 0 || r >= 1) throw new Error(`--kv-crush-ratio must be in [0, 1) (got "${s("kv-crush-ratio")}")`);
    o.crushRatio = r;
  }
  if (s("kv-crush-anchor") !== undefined) {
    if (!["mean", "alternate", "random"].includes(s("kv-crush-anchor")!)) throw new Error(`--kv-crush-anchor must be mean, alternate or random`);
    o.crushAnchor = s("kv-crush-anchor") as CompressionOptions["crushAnchor"];
  }
  if (s("kv-crush-base") !== undefined) {
    if (!["kvcompress", "snapkv"].includes(s("kv-crush-base")!)) throw new Error(`--kv-crush-base must be kvcompress or snapkv`);
    o.crushBase = s("kv-crush-base") as CompressionOptions["crushBase"];
  }
  if (o.method && o.method !== "none" && o.rate === undefined && o.maxCacheTokens === undefined) {
    throw new Error(`--kv-method ${o.method} needs a budget: --kv-rate or --kv-max-tokens`);
  }
  return o;
}
