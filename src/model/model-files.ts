// Where a model comes from: an HF folder (config.json, safetensors, tokenizer.json) or a
// GGUF file (or a folder holding exactly one and no safetensors). Everything is read
// and checked here, before a GPU is touched; the weights are uploaded later by
// `tensors` through src/model/weights.ts.
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { loadConfig, type ModelConfig } from "./config.ts";
import { readGguf } from "./gguf-file.ts";
import { ggufConfig, ggufTensors, ggufTokenizer } from "./gguf-model.ts";
import { listTensors } from "./safetensors.ts";
import { TextTokenizer } from "./tokenizer.ts";
import type { WeightTensor } from "./weights.ts";

export interface ModelFiles {
  /** the file or folder, for messages */
  source: string;
  format: "safetensors" | "gguf";
  cfg: ModelConfig;
  tokenizer: TextTokenizer;
  tensors: Map<string, WeightTensor>;
}

/** The GGUF file `path` names: itself, or the one .gguf of a folder without safetensors. */
export function ggufPath(path: string): string | null {
  if (path.endsWith(".gguf") && (!existsSync(path) || statSync(path).isFile())) return path;
  if (!existsSync(path) || !statSync(path).isDirectory()) return null;
  const names = readdirSync(path);
  if (names.some((n) => n.endsWith(".safetensors") || n === "model.safetensors.index.json")) return null;
  const ggufs = names.filter((n) => n.endsWith(".gguf"));
  if (ggufs.length > 1) throw new Error(`${path} holds ${ggufs.length} GGUF files (${ggufs.join(", ")}); pass --model one of them`);
  return ggufs.length ? join(path, ggufs[0]) : null;
}

export async function openModel(path: string): Promise<ModelFiles> {
  const file = ggufPath(path);
  if (file) {
    if (!existsSync(file)) throw new Error(`missing file ${file}`);
    const g = await readGguf(file);
    const cfg = ggufConfig(g);
    return { source: file, format: "gguf", cfg, tokenizer: ggufTokenizer(g), tensors: ggufTensors(g, cfg) };
  }
  const cfg = loadConfig(path);
  return { source: path, format: "safetensors", cfg, tokenizer: TextTokenizer.load(path), tensors: listTensors(path) };
}
