// GET /v1/kv_cache/{id}: a read-only map of a response's KV cache, head by head, for
// the playground (and anyone curious): tokens kept and blocks per (layer, KV head),
// which original positions survive (each head's in CACHE_MAP_BINS bins, one byte a bin),
// and the totals of usage.kv_cache. No prompt text. `id` is the response's id (the
// stream's chunks carry it); `?index=N` picks a choice. Behind --api-key like all /v1.
import { Hono } from "hono";
import { SETTABLE } from "../src/cache/compression.ts";
import { survivalLevels, type CacheMapView } from "../src/serving/cache-maps.ts";
import type { ServerContext } from "../src/serving/context.ts";
import { ApiError } from "./api-error.ts";

/** How `positions.heads` is written, for whoever reads it. */
export const SURVIVAL_ENCODING =
  "base64 of one byte per bin: 0 = none of the bin's positions kept, 255 = all, else ceil(255 * kept / bin width); bin i holds the positions p with floor(p * bins / context_tokens) = i";

export function kvCacheRoute(ctx: ServerContext) {
  return new Hono().get("/kv_cache/:id", async (c) => {
    const id = c.req.param("id");
    const index = Number(c.req.query("index") ?? 0);
    if (!Number.isSafeInteger(index) || index < 0) throw new ApiError(400, `index must be a whole number >= 0 (got "${c.req.query("index")}")`, "index");
    const view = ctx.cacheMap(id, index);
    if (!view) throw new ApiError(404, `no response ${id}${index ? ` with a choice ${index}` : ""} is running or recently finished here`, "id", "not_found");
    return c.json(await cacheMapBody(id, index, view, ctx.limits));
  });
}

/** The endpoint's JSON for one view (exported for the payload-size test). */
export async function cacheMapBody(id: string, index: number, view: CacheMapView, limits: Pick<ServerContext["limits"], "layers" | "kvHeads" | "blockSize">) {
  const { kv, heads } = view;
  const compression: Record<string, unknown> = {};
  for (const s of SETTABLE) compression[s.field!] = view.compression[s.key];
  return {
    object: "kv_cache.map",
    id,
    index,
    status: view.status,
    layers: limits.layers,
    kv_heads: limits.kvHeads,
    block_size: limits.blockSize,
    compression,
    context_tokens: heads?.context ?? kv.contextTokens,
    // per (layer, KV head), layer-major: entry layer * kv_heads + head
    tokens_kept: heads ? Array.from(heads.tokensKept) : [],
    blocks: heads ? Array.from(heads.blocks) : [],
    positions: heads ? { bins: heads.bins, encoding: SURVIVAL_ENCODING, heads: (await survivalLevels(heads)).map(base64) } : null,
    totals: {
      blocks_used: kv.blocksUsed,
      blocks_uncompressed: kv.blocksUncompressed,
      compression_rate: kv.compressionRate,
      evicted_tokens: kv.evictedTokens,
      tokens_kept: kv.tokensKept,
    },
  };
}

function base64(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}
