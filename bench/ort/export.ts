// Writes an HF Llama folder as a transformers.js-style ONNX folder: config and tokenizer
// files copied, onnx/model.onnx (f32) or onnx/model_fp16.onnx (f16) from
// bench/ort/llama-onnx.ts, weights inline (past 1 GiB in external blobs beside it, which
// config.json's transformers.js_config announces). The
// output is derived from the weights: keep it out of git (.onnx/ is ignored).
//
//   bun bench/ort/export.ts --model ../shared/models/kvc-small [--out .onnx/kvc-small] [--dtype f32|f16]
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { parseArgs } from "node:util";
import { loadConfig } from "../../src/model/config.ts";
import { buildLlamaOnnx, type OnnxDType } from "./llama-onnx.ts";
import { safetensorsSource } from "./weights.ts";

const COPIED = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"];

/** Exports `modelDir` into `outDir`; returns the path of the .onnx file. */
export function exportOnnx(modelDir: string, outDir: string, dtype: OnnxDType): string {
  const c = loadConfig(modelDir);
  const stem = dtype === "f32" ? "model" : "model_fp16";
  const m = buildLlamaOnnx(c, safetensorsSource(modelDir, dtype), {
    dtype,
    maxPositions: c.maxContext,
    externalAboveBytes: 2 ** 30,
    modelName: `${stem}.onnx`,
  });
  mkdirSync(join(outDir, "onnx"), { recursive: true });
  // read + write, not copy: the shared folder's read-only modes would block the next export
  for (const f of COPIED) if (existsSync(join(modelDir, f))) writeFileSync(join(outDir, f), readFileSync(join(modelDir, f)));
  if (m.externalData.length) {
    const config = JSON.parse(readFileSync(join(modelDir, "config.json"), "utf8"));
    config["transformers.js_config"] = { use_external_data_format: { [`${stem}.onnx`]: m.externalData.length } };
    writeFileSync(join(outDir, "config.json"), JSON.stringify(config, null, 2) + "\n");
  }
  const path = join(outDir, "onnx", `${stem}.onnx`);
  writeFileSync(path, m.model);
  for (const b of m.externalData) writeFileSync(join(outDir, "onnx", b.path), b.data);
  return path;
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: { model: { type: "string" }, out: { type: "string" }, dtype: { type: "string", default: "f32" } },
  });
  if (!values.model || (values.dtype !== "f32" && values.dtype !== "f16")) {
    console.error("usage: bun bench/ort/export.ts --model HF_DIR [--out DIR] [--dtype f32|f16]");
    process.exit(2);
  }
  const out = values.out ?? join(".onnx", basename(values.model));
  console.log(exportOnnx(values.model, out, values.dtype));
}
