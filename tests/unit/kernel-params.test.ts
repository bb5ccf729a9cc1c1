// Named kernel params: the host reads each kernel's `struct Params` from its WGSL, so
// a dispatch names its scalars instead of mirroring the field order by hand, f32
// fields are converted, and a missing or misspelt field is an error naming the kernel.
import { expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { f32Bits, paramLayout, paramWords } from "../../src/gpu/kernels.ts";
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
