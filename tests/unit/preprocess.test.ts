// The WGSL preprocessor: #include, #if / #else, #unroll (nested, counts from defines), binding
// numbering and {{NAME}} templates, and the errors a broken kernel source gets.
import { expect, test } from "bun:test";
import { preprocess, registerKernelSource } from "../../src/gpu/kernels.ts";

test("#if keeps one branch; @binding(#) numbers what survives", () => {
  const src = ["@group(0) @binding(#) var<storage> a: f32;", "#if B", "@group(0) @binding(#) var<storage> b: f32;", "#else", "no b", "#endif", "@group(0) @binding(#) var<storage> c: f32;"].join("\n");
  expect(preprocess(src, { B: false })).toBe(["@group(0) @binding(0) var<storage> a: f32;", "no b", "@group(0) @binding(1) var<storage> c: f32;"].join("\n"));
  expect(preprocess(src, { B: true }).split("\n").map((l) => /binding\((\d)\)/.exec(l)?.[1])).toEqual(["0", "1", "2"]);
});

test("#unroll repeats its lines with the index, nests, and takes counts like ROWS/2 or ROWS*BATCH", () => {
  const src = ["#unroll r ROWS/2", "#unroll b BATCH", "acc[{{r}} * {{BATCH}} + {{b}}]", "#endunroll", "#endunroll", "#unroll j ROWS*BATCH", "j{{j}}", "#endunroll"].join("\n");
  const out = preprocess(src, { ROWS: 4, BATCH: 3 }).split("\n");
  expect(out.slice(0, 6)).toEqual(["acc[0 * 3 + 0]", "acc[0 * 3 + 1]", "acc[0 * 3 + 2]", "acc[1 * 3 + 0]", "acc[1 * 3 + 1]", "acc[1 * 3 + 2]"]);
  expect(out.slice(6)).toEqual(Array.from({ length: 12 }, (_, j) => `j${j}`));
  // an #if inside an #unroll is decided once, before the unrolling
  expect(preprocess(["#unroll i 2", "#if A", "a{{i}}", "#else", "z{{i}}", "#endif", "#endunroll"].join("\n"), { A: false })).toBe("z0\nz1");
  expect(preprocess("#unroll i 0\nnever\n#endunroll\nafter", {})).toBe("after");
  // + and -, left to right: D/16-1 is (D / 16) - 1
  expect(preprocess("#unroll c D/16-1\nc{{c}}\n#endunroll", { D: 64 })).toBe("c0\nc1\nc2");
  expect(preprocess("#unroll c D+2/2\nc{{c}}\n#endunroll", { D: 2 })).toBe("c0\nc1");
  expect(() => preprocess("#unroll c D-2\nc\n#endunroll", { D: 1 })).toThrow(/negative/);
});

test("#include pastes a shared source, whose #ifs and templates then apply", () => {
  registerKernelSource("test_shared", ["#if A", "fn a() -> u32 { return {{N}}u; }", "#endif", "struct S { x: u32, }"].join("\n"));
  expect(preprocess("#include test_shared\nmain", { A: true, N: 7 })).toBe("fn a() -> u32 { return 7u; }\nstruct S { x: u32, }\nmain");
  expect(preprocess("#include test_shared", { A: false, N: 7 })).toBe("struct S { x: u32, }");
  registerKernelSource("test_loop", "#include test_loop");
  expect(() => preprocess("#include test_loop", {})).toThrow(/nest deeper than 4/);
});

test("broken sources name what is wrong", () => {
  expect(() => preprocess("#if NOPE\n#endif", {})).toThrow(/undefined name NOPE/);
  expect(() => preprocess("#if A\nx", { A: true })).toThrow(/#if without #endif/);
  expect(() => preprocess("#unroll i 2\nx", {})).toThrow(/#unroll i without #endunroll/);
  expect(() => preprocess("#endunroll", {})).toThrow(/#endunroll without #unroll/);
  expect(() => preprocess("#unroll i N\nx\n#endunroll", {})).toThrow(/N is not a whole number/);
  expect(() => preprocess("{{MISSING}}", {})).toThrow(/MISSING has no define/);
});
