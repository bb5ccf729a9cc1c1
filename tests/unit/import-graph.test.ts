// The layout holds: no import cycle between folders (src/'s subfolders count as
// folders), src/ never imports cli/, routes/, bench/ or tests/, routes/ reaches the
// engine only through src/serving, and a long file says why at its top. The same checks run as `bun scripts/import-graph.ts`.
import { expect, test } from "bun:test";
import { cycles, fileGraph, folderGraph, folderOf, importsOf, layerViolations, longFilesWithoutReason, type Graph } from "../../scripts/import-graph.ts";

const graph = (edges: Record<string, string[]>): Graph => new Map(Object.entries(edges).map(([k, v]) => [k, new Set(v)]));

test("the checker finds cycles, wrong-way imports and every kind of import", () => {
  expect(cycles(graph({ a: ["b"], b: ["c"], c: ["a"], d: ["a"] }))).toEqual([["a", "b", "c"]]);
  expect(cycles(graph({ a: ["b"], b: [], c: ["a", "b"] }))).toEqual([]);
  expect(layerViolations(new Map([["src/engine/x.ts", ["bench/common.ts", "src/cache/y.ts"]]]))).toEqual(["src/engine/x.ts imports bench/common.ts"]);
  expect(layerViolations(new Map([["routes/x.ts", ["src/serving/a.ts", "src/cache/compression.ts", "src/engine/engine.ts"]]]))).toEqual(["routes/x.ts imports src/engine/engine.ts"]);
  expect(importsOf(`import a from "./a.ts";\nexport { b } from "../b.ts";\nconst c = await import("./c.ts");\nimport "./d.ts";\nimport x from "valibot";`)).toEqual(["./a.ts", "../b.ts", "./c.ts", "./d.ts"]);
  expect([folderOf("src/engine/engine.ts"), folderOf("routes/schemas/requests.ts"), folderOf("tests/unit/x.test.ts")]).toEqual(["src/engine", "routes", "tests"]);
});

test("the project: no cycle between folders, src/ imports nothing above it, long files say why", () => {
  const files = fileGraph();
  expect(files.size).toBeGreaterThan(100);
  expect(cycles(folderGraph(files))).toEqual([]);
  expect(layerViolations(files)).toEqual([]);
  expect(longFilesWithoutReason(files.keys())).toEqual([]);
});
