// KV-Compress's eviction plan as the papers state it, with comparator sorts over every
// key: the reference the planner is tested against and benchmarked beside. Its
// allocations (CompressionOptions.allocation) are written out here from the papers:
// KV-Compress (one sort of all chunks), its fork's even layer split, AdaKV (the same
// budget per layer, heads compared by the share of their own attention, a floor of
// ADA_FLOOR of a head's even share) and PyramidKV (an arithmetic sequence of layer
// budgets from the bottom layer up, the top one 1/PYRAMID_BETA of the average).
import { ADA_FLOOR, pooledScores, PYRAMID_BETA, type HeadKeys, type PlanContext } from "../src/cache/policies.ts";

/** KV-Compress as the papers state it, with a full sort: the planner must equal it. */
export function referenceKvCompress(k: HeadKeys[], ctx: PlanContext, keepTotal: number): number[][] {
  const bs = ctx.opts.chunkSize;
  const mode = ctx.opts.allocation;
  const pooled = k.map((x) => pooledScores(x, ctx.opts.poolKernel));
  const cands = k.map((x, h) =>
    Array.from(x.pos.keys()).filter((i) => x.pos[i] <= ctx.lastPos - ctx.opts.protectedWindow).sort((a, b) => pooled[h][a] - pooled[h][b] || x.pos[a] - x.pos[b]));
  const held = k.map((x) => x.pos.length);
  const protectedKeys = k.map((x, h) => held[h] - cands[h].length);
  const layer = (h: number) => Math.floor(h / ctx.kvHeads);
  const global = mode === "global" || mode === "global-norm";
  const groupOf = (h: number) => (global ? 0 : layer(h));
  const nGroups = global ? 1 : ctx.layers;

  // each group's budget
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
  const heads = k.map((_, h) => h);
  let budget: number[];
  if (mode === "pyramid") {
    const avg = 1, top = avg / PYRAMID_BETA, bottom = 2 * avg - top;
    const w = Array.from({ length: ctx.layers }, (_, l) => (ctx.layers > 1 ? bottom - ((bottom - top) * l) / (ctx.layers - 1) : 1));
    const prot = Array.from({ length: ctx.layers }, (_, l) => sum(heads.filter((h) => layer(h) === l).map((h) => protectedKeys[h])));
    budget = largestRemainders(Math.max(0, keepTotal - sum(prot)), w).map((b, l) => b + prot[l]);
  } else {
    budget = largestRemainders(keepTotal, Array.from({ length: nGroups }, (_, g) => heads.filter((h) => groupOf(h) === g).length));
  }

  // how chunk means compare across heads, and the keys each head may lose
  const normalized = mode === "global-norm" || mode === "ada" || mode === "pyramid";
  const total = cands.map((c, h) => sum(c.map((i) => pooled[h][i])));
  const weight = (h: number) => (normalized && total[h] > 0 ? 1 / total[h] : 1);
  const mayLose = cands.map((c, h) => {
    if (mode !== "ada" && mode !== "pyramid") return c.length;
    const perHead = Math.floor((ADA_FLOOR * budget[groupOf(h)]) / ctx.kvHeads);
    const beyondProtected = perHead - protectedKeys[h];
    // the floor counts in whole chunks: a head may lose up to the next chunk boundary
    return beyondProtected > 0 ? Math.min(c.length, bs * Math.ceil(Math.max(0, c.length - beyondProtected) / bs)) : c.length;
  });

  const count = new Array(k.length).fill(0);
  for (let g = 0; g < nGroups; g++) {
    const members = heads.filter((h) => groupOf(h) === g);
    let need = sum(members.map((h) => held[h])) - budget[g];
    const chunks: { h: number; c: number; size: number; mean: number }[] = [];
    for (const h of members) {
      const c = cands[h].slice(0, mayLose[h]);
      for (let i = 0; i * bs < c.length; i++) {
        const part = c.slice(i * bs, (i + 1) * bs);
        chunks.push({ h, c: i, size: part.length, mean: Math.fround((sum(part.map((j) => pooled[h][j])) / part.length) * weight(h)) });
      }
    }
    chunks.sort((a, b) => a.mean - b.mean || a.h - b.h || a.c - b.c);
    for (const ch of chunks) {
      if (need <= 0) break;
      const take = Math.min(ch.size, need);
      count[ch.h] += take;
      need -= take;
    }
  }
  return cands.map((c, h) => c.slice(0, count[h]));
}

/** `total` split in proportion to `w`, remainders to the largest fractions (ties: lower index). */
function largestRemainders(total: number, w: number[]): number[] {
  const s = w.reduce((a, b) => a + b, 0);
  const exact = w.map((x) => (s ? (total * x) / s : 0));
  const out = exact.map(Math.floor);
  let left = total - out.reduce((a, b) => a + b, 0);
  for (const i of exact.map((x, i) => i).sort((a, b) => exact[b] - Math.floor(exact[b]) - (exact[a] - Math.floor(exact[a])) || a - b)) {
    if (left-- <= 0) break;
    out[i]++;
  }
  return out;
}
