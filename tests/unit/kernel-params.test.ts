// Named kernel params: the host reads each kernel's `struct Params` from its WGSL, so
// a dispatch names its scalars instead of mirroring the field order by hand, f32
// fields are converted, and a missing or misspelt field is an error naming the kernel.
import { expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { kernelSource } from "../../src/gpu/kernels.ts";
import { f32Bits, paramLayout, paramWords, StructArray, structLayout } from "../../src/gpu/params.ts";
import { ROOT } from "../fixtures/helpers.ts";

test("every kernel's Params struct reads as 32-bit scalars with distinct names", () => {
  const files = readdirSync(`${ROOT}/kernels`).filter((f) => f.endsWith(".wgsl"));
  let withParams = 0;
  for (const f of files) {
    const src = readFileSync(`${ROOT}/kernels/${f}`, "utf8");
    const layout = paramLayout(src);
    expect(new Set(layout.names).size).toBe(layout.names.length);
    if (/struct\s+Params/.test(src)) {
      expect({ f, fields: layout.names.length > 0 }).toEqual({ f, fields: true });
      withParams++;
    }
  }
  expect(withParams).toBeGreaterThan(15);
  expect(paramLayout(readFileSync(`${ROOT}/kernels/rmsnorm.wgsl`, "utf8"))).toEqual({ names: ["D", "eps", "M"], f32: [false, true, false] });
});

test("named values become the struct's words in its order; f32 fields as their bits", () => {
  const layout = paramLayout("struct Params { n: u32, first: u32, seed: u32, shift: u32, base: f32, }");
  expect(paramWords(layout, { base: 1.5, shift: 5, seed: 2 ** 32 - 1, first: 3, n: 10 }, "fill_random")).toEqual([10, 3, 2 ** 32 - 1, 5, f32Bits(1.5)]);
  expect(() => paramWords(layout, { n: 1, first: 0, seed: 0, shift: 5 }, "fill_random")).toThrow("fill_random: Params field base is not set");
  expect(() => paramWords(layout, { n: 1, first: 0, seed: 0, shift: 5, base: 0, bsae: 1 }, "fill_random")).toThrow("fill_random: Params has no field bsae");
  expect(() => paramLayout("struct Params { v: vec4<f32>, }")).toThrow("is not a 32-bit scalar");
});

test("a storage struct array is written by field name in the WGSL struct's order", () => {
  const layout = structLayout(kernelSource("kv_plan_head"), "Head");
  expect(layout.names).toEqual(["tableOffset", "len", "protectFrom", "radius", "chunk", "base", "outBase", "evict", "lenNow"]);
  const a = new StructArray(layout, 2, "Head");
  a.set(1, { tableOffset: 7, len: 100, protectFrom: 90, radius: 3, chunk: 16, base: 512, outBase: 40, evict: 0, lenNow: 100 });
  a.put(1, "evict", 12);
  expect(Array.from(a.words.subarray(9))).toEqual([7, 100, 90, 3, 16, 512, 40, 12, 100]);
  expect(a.get(1, "outBase")).toBe(40);
  expect(() => a.put(0, "lenNwo", 1)).toThrow("Head has no field lenNwo");
  expect(() => a.set(0, { len: 1 })).toThrow("needs all 9 fields");
  expect(() => structLayout("struct Params { n: u32, }", "Head")).toThrow("struct Head not found");
});
