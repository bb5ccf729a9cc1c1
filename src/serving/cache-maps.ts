// The generations whose cache maps can be asked for by response id (GET /v1/kv_cache/{id}):
// every running one, and the most recent finished ones, whose maps were taken as their
// sequences ended (Sequence.mapAtRelease). A response with several choices lists one
// generation per choice, in order.
import type { CompressionOptions, KvStats } from "../cache/compression.ts";
import { binWidths, type HeadsMap } from "../cache/cache-map.ts";
import type { EngineClient } from "../engine/client.ts";
import type { Generation } from "./generation.ts";

/** Bins of the context each head's surviving positions are counted into. */
export const CACHE_MAP_BINS = 256;
/** Finished responses whose maps stay asked-for after they end. */
const KEEP_FINISHED = 32;

/** One generation's cache, head by head, as GET /v1/kv_cache/{id} reports it. */
export interface CacheMapView {
  /** waiting: not admitted yet (or preempted), so it holds no cache; running; finished */
  status: "waiting" | "running" | "finished";
  compression: CompressionOptions;
  /** the sequence's figures (usage.kv_cache's, frozen at the end) */
  kv: KvStats;
  /** per (layer, KV head); null while waiting */
  heads: HeadsMap | null;
}

export class CacheMaps {
  private byId = new Map<string, Generation[]>();
  private finished: string[] = [];

  constructor(private client: EngineClient) {}

  /** Registers choice `gens.length` of response `id`; forgotten once KEEP_FINISHED newer responses have ended. */
  track(id: string, gen: Generation) {
    const gens = this.byId.get(id) ?? [];
    gens.push(gen);
    this.byId.set(id, gens);
    gen.ended.then(() => {
      if (!gens.every((g) => g.seq.finished)) return;
      this.finished.push(id);
      while (this.finished.length > KEEP_FINISHED) this.byId.delete(this.finished.shift()!);
    });
  }

  /** Choice `index` of response `id` now, or null when unknown (never seen, or forgotten). */
  view(id: string, index = 0): CacheMapView | null {
    const gen = this.byId.get(id)?.[index];
    if (!gen) return null;
    const seq = gen.seq;
    const live = this.client.cacheMap(seq, CACHE_MAP_BINS);
    if (live) return { status: seq.finished ? "finished" : "running", compression: seq.compression, kv: this.client.kvStats(seq), heads: live };
    return { status: seq.finished ? "finished" : "waiting", compression: seq.compression, kv: seq.kv, heads: seq.finalMap };
  }
}

/**
 * How much of each bin survives in each head, one byte a bin: 0 none of the bin's
 * positions, 255 all, else ceil(255 * kept / the bin's width) (at most 254).
 */
export async function survivalLevels(heads: HeadsMap): Promise<Uint8Array[]> {
  const { context, bins } = heads;
  const widths = binWidths(context, bins);
  const counts = heads.survival ? await heads.survival : null;
  return Array.from(heads.tokensKept, (_, h) => {
    const row = new Uint8Array(bins);
    for (let i = 0; i < bins; i++) {
      const kept = counts ? counts[h * bins + i] : widths[i];
      row[i] = kept === 0 ? 0 : kept >= widths[i] ? 255 : Math.min(254, Math.ceil((255 * kept) / widths[i]));
    }
    return row;
  });
}
