// @mlc-ai/web-xgrammar, loaded the same under Bun and Deno. Its lib/index.js is a UMD
// bundle in a "type": "module" package: Bun hands its CommonJS exports over, while Deno
// runs it as an ES module without exports, where it registers itself as
// globalThis.xgrammar, and its emscripten glue asks `require("url")` and `__filename`
// for its own path (the wasm itself is inlined). So under Deno the two are lent to it
// while it loads and starts its wasm module, then taken back.
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import type xgDefault from "@mlc-ai/web-xgrammar";

export type { CompiledGrammar, GrammarCompiler } from "@mlc-ai/web-xgrammar";

type Xgrammar = typeof xgDefault;

async function load(): Promise<Xgrammar> {
  const g = globalThis as Record<string, unknown>;
  if ("Bun" in g) return (await import("@mlc-ai/web-xgrammar")).default;
  const lent = { require: createRequire(import.meta.url), __filename: fileURLToPath(import.meta.url) };
  const had = Object.keys(lent).filter((k) => k in g);
  for (const [k, v] of Object.entries(lent)) if (!had.includes(k)) g[k] = v;
  try {
    const m = (await import("@mlc-ai/web-xgrammar")) as { default?: Xgrammar };
    const xg = m.default ?? (g.xgrammar as Xgrammar);
    await xg.Testings._jsonSchemaToEBNF("{}"); // starts the wasm module while the two are there
    return xg;
  } finally {
    for (const k of Object.keys(lent)) if (!had.includes(k)) delete g[k];
  }
}

let loading: Promise<Xgrammar> | null = null;

/** The xgrammar API, loaded on first use. */
export function xgrammar(): Promise<Xgrammar> {
  return (loading ??= load());
}
