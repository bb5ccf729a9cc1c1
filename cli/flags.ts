// What generate and eval share on the command line: the model and KV memory flags,
// JSON output and help, loading the engine from them, and number flags with one
// error shape ("--NAME must be WHAT (got "VALUE")").
import { Engine } from "../src/engine/engine.ts";
import { parseBytes } from "../src/cache/kv-cache.ts";
import { defaultModelDir } from "./model-dir.ts";
import { ON_LOAD_QUANTS, type OnLoadQuant } from "../src/model/quantize-weights.ts";

export const ENGINE_FLAG_OPTIONS = {
  model: { type: "string" },
  "kv-memory": { type: "string" },
  quantize: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

export function numberFlag(v: string | undefined, name: string, def: number, check: (x: number) => boolean, what: string): number {
  if (v === undefined) return def;
  const x = Number(v);
  if (!Number.isFinite(x) || !check(x)) throw new Error(`--${name} must be ${what} (got "${v}")`);
  return x;
}

export const intFlag = (v: string | undefined, name: string, def: number, min: number): number =>
  numberFlag(v, name, def, (x) => Number.isInteger(x) && x >= min, `an integer >= ${min}`);

/** The engine --model, --kv-memory and --quantize name; progress lines go to stderr unless --json. */
export function loadEngine(a: { model?: string; "kv-memory"?: string; quantize?: string; json?: boolean }): Promise<Engine> {
  const log = a.json ? () => {} : (m: string) => console.error(`[kvc] ${m}`);
  const q = a.quantize;
  if (q !== undefined && !(ON_LOAD_QUANTS as readonly string[]).includes(q)) throw new Error(`--quantize must be one of ${ON_LOAD_QUANTS.join(", ")} (got "${q}")`);
  return Engine.load(a.model ?? defaultModelDir(), { kvMemory: a["kv-memory"] ? parseBytes(a["kv-memory"]) : undefined, quantize: q as OnLoadQuant | undefined, log });
}
