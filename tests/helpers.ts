// Shared test fixtures: paths to ../shared models and one engine per model.
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Engine, type EngineOptions } from "../src/engine/engine.ts";

export const ROOT = fileURLToPath(new URL("..", import.meta.url));
export const SHARED = process.env.KVC_SHARED ?? fileURLToPath(new URL("../../shared", import.meta.url));
export const modelDir = (name: string) => `${SHARED}/models/${name}`;
export const hasShared = existsSync(`${SHARED}/models`);
export const readJsonFile = (p: string) => JSON.parse(readFileSync(p, "utf8"));
export const GREEDY = { temperature: 0, topP: 1, topK: 0, seed: 0 };

const engines = new Map<string, Promise<Engine>>();
/** One engine per model folder for the whole test process (shader compiles are slow on lavapipe). */
export function engineFor(dir: string, o: EngineOptions = {}): Promise<Engine> {
  const key = dir + JSON.stringify(o);
  let e = engines.get(key);
  if (!e) {
    e = Engine.load(dir, { kvMemory: 64 * 2 ** 20, ...o });
    engines.set(key, e);
  }
  return e;
}
