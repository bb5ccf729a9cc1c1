// kernels/token_mask.wgsl and kernels/logprobs.wgsl against their CPU references on this
// adapter (lavapipe in CI): a grammar's mask before sampling, and the log-softmax of the
// sampled token and the top n next to it.
import { describe, expect, test } from "bun:test";
import { cdiv } from "../../src/gpu/kernels.ts";
import { f32Bits as F } from "../../src/gpu/params.ts";
import * as ref from "../fixtures/reference.ts";
import { rand, readF32, readU32, up, variants, zeros } from "../fixtures/gpu-helpers.ts";

describe("constrained sampling and logprobs", async () => {
  const [{ kc }] = await variants();
  const V = 1000;

  test("a grammar's mask: only allowed tokens are drawn, as the reference draws them", async () => {
    const W = Math.ceil(V / 32);
    const cases = [
      { temperature: 0, topP: 1, topK: 0 },
      { temperature: 1, topP: 1, topK: 0 },
      { temperature: 0.8, topP: 0.9, topK: 0 },
      { temperature: 1.2, topP: 1, topK: 3 },
    ];
    const l = rand(V, 16, 6);
    const mask = new Uint32Array(W);
    for (const i of [3, 17, 250, 251, 600, 999]) mask[i >>> 5] |= 1 << (i & 31);
    const rows = cases.flatMap((c) => [0, 1, 2].map((j) => ({ ...c, seed: 99 + j, counter: j })));
    const B = rows.length;
    const logits = await up(new Float32Array(B * V).map((_, i) => l[i % V]));
    const maskRows = rows.map((_, b) => b);
    const st = kc.step();
    st.dispatch(kc.kernel("token_mask"), [logits, await up(new Uint32Array(B * W).map((_, i) => mask[i % W])), await up(new Uint32Array(maskRows))], [V, W], [cdiv(V, 256), B]);
    st.submit();
    const masked = ref.applyMask(l, mask);
    expect([...(await readF32(logits, V))]).toEqual([...masked]);
    const samp = new Uint32Array(B * 8);
    rows.forEach((r, b) => samp.set([F(r.temperature), F(r.topP), r.topK, r.seed, r.counter], b * 8));
    const out = await zeros(B * 4);
    const st2 = kc.step();
    st2.dispatch(kc.kernel("sample"), [logits, await up(samp), out, await zeros(B * 4)], [V, B, 0], [B]);
    st2.submit();
    const got = [...(await readU32(out, B))];
    expect(got).toEqual(rows.map((r) => ref.sample(masked, r.temperature, r.topP, r.topK, ref.uniform(r.seed, r.counter))));
    for (const t of got) expect([3, 17, 250, 251, 600, 999]).toContain(t);
  });

  test("log-softmax of the sampled token and the top n, as the reference computes them", async () => {
    const STRIDE = 41;
    const l = rand(V, 17, 6);
    l[10] = l[20] = 7; // a tie: the lower index first
    const W = Math.ceil(V / 32);
    const mask = new Uint32Array(W).fill(0xffffffff);
    mask[0] = 0; // tokens 0-31 forbidden
    const rows = [
      { temperature: 0, n: 5, masked: false, sampled: 10 },
      { temperature: 0.7, n: 20, masked: false, sampled: 999 },
      { temperature: 1.5, n: 0, masked: false, sampled: 3 },
      { temperature: 1, n: 0, masked: false, sampled: 0, off: true },
      { temperature: 1, n: 3, masked: true, sampled: 40 },
    ];
    const B = rows.length;
    const rowLogits = rows.map((r) => (r.masked ? ref.applyMask(l, mask) : l));
    const logits = new Float32Array(B * V);
    rowLogits.forEach((x, b) => logits.set(x, b * V));
    const samp = new Uint32Array(B * 8);
    rows.forEach((r, b) => samp.set([F(r.temperature), F(1), 0, 0, 0, 0, r.off ? 0 : 1 + r.n], b * 8));
    const histOffset = 2;
    const lp = await up(new Uint32Array((histOffset + B) * STRIDE).fill(7));
    const st = kc.step();
    st.dispatch(kc.kernel("logprobs"), [await up(logits), await up(samp), await up(new Uint32Array(rows.map((r) => r.sampled))), lp], [V, histOffset], [B]);
    st.submit();
    const words = await readU32(lp, (histOffset + B) * STRIDE);
    const f = new Float32Array(words.buffer);
    rows.forEach((r, b) => {
      const o = (histOffset + b) * STRIDE;
      if (r.off) return expect([...words.slice(o, o + STRIDE)]).toEqual(Array(STRIDE).fill(7));
      const want = ref.logprobs(rowLogits[b], r.temperature, r.n, r.sampled);
      expect(Math.abs(f[o] - want.sampled)).toBeLessThan(1e-4);
      expect([...words.slice(o + 1, o + 1 + r.n)]).toEqual(want.top.map(([id]) => id));
      for (let j = 0; j < r.n; j++) expect(Math.abs(f[o + 21 + j] - want.top[j][1])).toBeLessThan(1e-4);
      expect([...words.slice(o + 1 + r.n, o + 21)]).toEqual(Array(20 - r.n).fill(0xffffffff));
    });
    expect(words[(histOffset) * STRIDE + 1]).toBe(10);
  });
});
