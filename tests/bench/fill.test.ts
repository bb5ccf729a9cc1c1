// The benchmark's kernels against CPU references: fill_random (every bit, both modes,
// across shard offsets), and the copy and read-only kernels of the bandwidth ceilings.
import { describe, expect, test } from "bun:test";
import { fillRandom, RANDOM_SHIFT, tensorSeed } from "../../bench/random-weights.ts";
import { f16BitsToF32 } from "../../src/model/f16.ts";
import { grid256 } from "../../bench/profile.ts";
import { rand, readU32, up, variants, zeros } from "../fixtures/gpu-helpers.ts";
import { randomValue, refF16Words } from "../fixtures/bench-reference.ts";


describe("fill_random", async () => {
  const [{ kc }] = await variants();

  test("f16 pairs match the CPU reference bit for bit, at any element offset", async () => {
    for (const [words, first, shift, seed] of [[1000, 0, 5, 7], [777, 123456, 5, 0xdeadbeef], [300, 2 ** 28, 9, tensorSeed(1, "L0.qkv")], [64, 5, 0, 3]]) {
      const b = await zeros(words * 4);
      fillRandom(kc, b, { words, first, seed, f16: true, shift });
      const got = await readU32(b, words);
      expect(Array.from(got)).toEqual(Array.from(refF16Words(seed, words, first, shift)));
    }
  });

  test("f32 mode: base + noise, exact", async () => {
    const n = 513, seed = 99;
    const b = await zeros(n * 4);
    fillRandom(kc, b, { words: n, seed, f16: false, base: 1 });
    const got = new Float32Array((await readU32(b, n)).buffer);
    const want = Float32Array.from({ length: n }, (_, i) => randomValue(seed, i, RANDOM_SHIFT, 1));
    expect(Array.from(got)).toEqual(Array.from(want));
  });

  test("values are spread over [-2^-shift, 2^-shift) and never all zero", async () => {
    const words = 4096, seed = 5;
    const b = await zeros(words * 4);
    fillRandom(kc, b, { words, seed, f16: true });
    const w = await readU32(b, words);
    const vals = Array.from(w).flatMap((u) => [f16BitsToF32(u & 0xffff), f16BitsToF32(u >>> 16)]);
    const amp = 2 ** -RANDOM_SHIFT;
    expect(Math.min(...vals)).toBeGreaterThanOrEqual(-amp);
    expect(Math.max(...vals)).toBeLessThan(amp);
    const mean = vals.reduce((a, v) => a + v, 0) / vals.length;
    const std = Math.sqrt(vals.reduce((a, v) => a + (v - mean) ** 2, 0) / vals.length);
    expect(Math.abs(mean)).toBeLessThan(amp * 0.05);
    expect(std).toBeGreaterThan(amp / Math.sqrt(3) * 0.95);
    expect(std).toBeLessThan(amp / Math.sqrt(3) * 1.05);
    expect(new Set(w).size).toBeGreaterThan(words * 0.9);
  });

  test("tensor seeds differ by name and by model seed", () => {
    const names = ["embed", "L0.qkv", "L1.qkv", "L0.o", "lm_head", "norm"];
    expect(new Set(names.map((n) => tensorSeed(1, n))).size).toBe(names.length);
    expect(tensorSeed(1, "embed")).not.toBe(tensorSeed(2, "embed"));
  });
});

describe("copy kernel", async () => {
  const [{ kc }] = await variants();
  test("copies every 16-byte word, on a 2-D grid too", async () => {
    for (const [n16, maxX] of [[1000, 65535], [5000, 3]] as const) {
      const src = await up(rand(n16 * 4, n16));
      const dst = await zeros(n16 * 16);
      const st = kc.step();
      st.dispatch(kc.kernel("copy"), [src, dst], [n16], grid256(n16, maxX));
      st.submit();
      expect(Array.from(await readU32(dst, n16 * 4))).toEqual(Array.from(await readU32(src, n16 * 4)));
    }
  });
});

describe("read-only bandwidth kernel", async () => {
  const [{ kc }] = await variants();
  test("each workgroup writes the wrapping sum of the words it strides over", async () => {
    for (const [n16, groups] of [[4096, 3], [1000, 7], [300, 1]] as const) {
      const words = new Uint32Array(n16 * 4).map((_, i) => (Math.imul(i + 1, 2654435761) >>> 0));
      const src = await up(words);
      const out = await zeros(groups * 4);
      const st = kc.step();
      st.dispatch(kc.kernel("read_bw"), [src, out], [n16], [groups]);
      st.submit();
      const want = new Uint32Array(groups);
      for (let i = 0; i < n16; i++) {
        const g = Math.floor(i / 256) % groups;
        for (let c = 0; c < 4; c++) want[g] = (want[g] + words[4 * i + c]) >>> 0;
      }
      expect(Array.from(await readU32(out, groups))).toEqual(Array.from(want));
    }
  });
});
