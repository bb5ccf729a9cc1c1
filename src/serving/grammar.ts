// Constrained decoding through xgrammar (npm @mlc-ai/web-xgrammar, the grammar engine
// WebLLM uses, compiled to wasm; it runs under Bun and Deno alike). A grammar (a JSON
// schema, any JSON object, or a structural tag such as the tool-call format of
// routes/tool-calls.ts) is compiled once against the model's vocabulary and cached; each
// request gets a matcher that hands the engine the bitmask of allowed next tokens
// (TokenConstraint) and follows the tokens it samples.
import { xgrammar, type CompiledGrammar, type GrammarCompiler } from "./xgrammar.ts";
import type { TokenConstraint } from "../engine/sequence.ts";
import type { TextTokenizer } from "../model/tokenizer.ts";

export type GrammarSpec =
  /** output that validates against `schema`; `strict`: no properties or items beyond it */
  | { kind: "json_schema"; schema: Record<string, unknown>; strict: boolean }
  /** any JSON object */
  | { kind: "json_object" }
  /** xgrammar's structural tag format (text and tagged JSON interleaved) */
  | { kind: "structural_tag"; format: Record<string, unknown> };

/** A grammar xgrammar refused; the message says why, as it does. */
export class GrammarError extends Error {}

/**
 * JSON nesting a schema may have (a nested object schema takes two levels: itself and
 * its "properties"), so 16 nested objects; OpenAI's strict mode allows 10. xgrammar's
 * converter recurses per level and runs out of the wasm stack near 100 nested schemas.
 */
export const MAX_SCHEMA_DEPTH = 32;

/** A matcher per request; serving disposes it when the sequence ends (its wasm memory is not collected). */
export interface GrammarConstraint extends TokenConstraint {
  dispose(): void;
}

const CACHE_SIZE = 64;

export class Grammars {
  private compiler: Promise<GrammarCompiler> | null = null;
  /** compiled grammars by their spec's JSON, least recently used first */
  private cache = new Map<string, Promise<CompiledGrammar>>();

  constructor(
    private tokenizer: TextTokenizer,
    /** logits per row (may exceed the tokenizer's pieces) */
    private vocab: number,
    private stopIds: number[],
  ) {}

  /** A fresh matcher for `spec`; throws GrammarError when xgrammar cannot compile it. */
  async constraint(spec: GrammarSpec): Promise<GrammarConstraint> {
    const compiled = await this.compile(spec);
    const xg = await xgrammar();
    const m = await xg.GrammarMatcher.createGrammarMatcher(compiled);
    return {
      nextMask: async () => {
        const mask = await m.getNextTokenBitmask();
        return new Uint32Array(mask.buffer, mask.byteOffset, mask.length);
      },
      accept: (id) => m.acceptToken(id),
      get terminated() {
        return m.isTerminated();
      },
      dispose: () => m.dispose(),
    };
  }

  private compile(spec: GrammarSpec): Promise<CompiledGrammar> {
    const key = JSON.stringify(spec);
    let c = this.cache.get(key);
    if (c) {
      this.cache.delete(key);
      this.cache.set(key, c);
      return c;
    }
    c = this.compileNew(spec);
    this.cache.set(key, c);
    c.catch(() => this.cache.delete(key));
    while (this.cache.size > CACHE_SIZE) {
      const [oldest, p] = this.cache.entries().next().value!;
      this.cache.delete(oldest);
      p.then((g) => g.dispose(), () => {});
    }
    return c;
  }

  private async compileNew(spec: GrammarSpec): Promise<CompiledGrammar> {
    // a failed start is not kept: the next request tries again
    const compiler = await (this.compiler ??= this.createCompiler().catch((e) => {
      this.compiler = null;
      throw e;
    }));
    return xgrammarCall(() => {
      switch (spec.kind) {
        // one line, ", " and ": " between items: no run of whitespace for a sampler to wander into
        case "json_schema":
          return compiler.compileJSONSchema(JSON.stringify(spec.schema), false, -1, undefined, spec.strict);
        case "json_object":
          return compiler.compileJSONSchema(JSON.stringify({ type: "object" }), false, -1, undefined, false);
        case "structural_tag":
          return compiler.compileStructuralTag({ type: "structural_tag", format: spec.format } as Record<string, unknown>);
      }
    });
  }

  private async createCompiler(): Promise<GrammarCompiler> {
    const tk = this.tokenizer;
    const xg = await xgrammar();
    const info = await xg.TokenizerInfo.createTokenizerInfo(tk.pieces, tk.vocabType, tk.prependsSpace, this.vocab, this.stopIds);
    return xg.GrammarCompiler.createGrammarCompiler(info);
  }
}

/**
 * A JSON schema as an EBNF grammar of one-line JSON (for a structural tag's content,
 * whose own `json_schema` format allows any whitespace). Throws GrammarError.
 */
export function jsonSchemaEbnf(schema: Record<string, unknown>, strict: boolean): Promise<string> {
  return xgrammarCall(async () => (await xgrammar()).Testings._jsonSchemaToEBNF(JSON.stringify(schema), false, -1, undefined, strict));
}

/**
 * Runs an xgrammar call, turning its failures into GrammarErrors. A refused grammar
 * aborts inside the wasm module, which goes on working after, and prints its reason to
 * stderr through a printer bound when the module loaded (so it cannot be caught here):
 * the common reasons are checked first (schemaProblem), the rest get a general message.
 */
async function xgrammarCall<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    // an aborted wasm call throws a RuntimeError; a C++ exception arrives as a bare pointer
    const what = e instanceof Error ? e.message.split(".")[0] : `exception ${String(e)}`;
    throw new GrammarError(`the grammar engine (xgrammar) could not compile it (${what}); the server's log has its reason`);
  }
}

const NAME_MAPS = new Set(["properties", "patternProperties", "$defs", "definitions", "dependentSchemas"]);
const JSON_TYPES = new Set(["string", "number", "integer", "boolean", "object", "array", "null"]);

/** What xgrammar would refuse in a JSON schema before it aborts: nesting too deep, unknown types; null when none. */
export function schemaProblem(schema: unknown): string | null {
  if (jsonDepth(schema) > MAX_SCHEMA_DEPTH) return `the schema nests deeper than ${MAX_SCHEMA_DEPTH} levels`;
  // "properties" and the like map names to schemas: their keys are no keywords
  const walk = (x: unknown, path: string, names = false): string | null => {
    if (typeof x !== "object" || x === null) return null;
    if (!names && !Array.isArray(x) && "type" in x) {
      const t = (x as { type: unknown }).type;
      const types = Array.isArray(t) ? t : [t];
      const bad = types.find((y) => typeof y !== "string" || !JSON_TYPES.has(y));
      if (bad !== undefined || types.length === 0) return `${path ? `the schema's ${path}` : "the schema"} has type ${JSON.stringify(t)}; JSON schema types are ${[...JSON_TYPES].join(", ")}`;
    }
    for (const [k, v] of Object.entries(x)) {
      const p = walk(v, path ? `${path}.${k}` : k, !names && NAME_MAPS.has(k));
      if (p) return p;
    }
    return null;
  };
  return walk(schema, "");
}

/** Depth of JSON nesting of `x` (a scalar is 0), counting no further than `limit` + 1. */
export function jsonDepth(x: unknown, limit = MAX_SCHEMA_DEPTH): number {
  if (typeof x !== "object" || x === null) return 0;
  if (limit < 0) return 1;
  let d = 0;
  for (const v of Object.values(x)) {
    d = Math.max(d, jsonDepth(v, limit - 1));
    if (d > limit) break;
  }
  return 1 + d;
}
