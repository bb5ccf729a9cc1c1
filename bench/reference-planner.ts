// KV-Compress's eviction plan as the paper states it, with comparator sorts over every
// key: the reference the planner is tested against and benchmarked beside.
import { pooledScores, type HeadKeys, type PlanContext } from "../src/cache/policies.ts";

/** KV-Compress as the paper states it, with a full sort: the planner must equal it. */
export function referenceKvCompress(k: HeadKeys[], ctx: PlanContext, keepTotal: number): number[][] {
  const bs = ctx.opts.chunkSize;
  const pooled = k.map((x) => pooledScores(x, ctx.opts.poolKernel));
  const cands = k.map((x, h) =>
    Array.from(x.pos.keys()).filter((i) => x.pos[i] <= ctx.lastPos - ctx.opts.protectedWindow).sort((a, b) => pooled[h][a] - pooled[h][b] || x.pos[a] - x.pos[b]));
  let need = k.reduce((a, x) => a + x.pos.length, 0) - keepTotal;
  const chunks: { h: number; c: number; size: number; mean: number }[] = [];
  cands.forEach((c, h) => {
    for (let i = 0; i * bs < c.length; i++) {
      const part = c.slice(i * bs, (i + 1) * bs);
      chunks.push({ h, c: i, size: part.length, mean: Math.fround(part.reduce((a, j) => a + pooled[h][j], 0) / part.length) });
    }
  });
  chunks.sort((a, b) => a.mean - b.mean || a.h - b.h || a.c - b.c);
  const count = new Array(k.length).fill(0);
  for (const ch of chunks) {
    if (need <= 0) break;
    const take = Math.min(ch.size, need);
    count[ch.h] += take;
    need -= take;
  }
  return cands.map((c, h) => c.slice(0, count[h]));
}
