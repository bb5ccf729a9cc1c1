// kvc eval: retrieval accuracy (exact match of the first digit run) and perplexity,
// with the --kv-* compression applied.
import { parseArgs } from "node:util";
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import { loadInstances, runRetrieval, summarize, type RetrievalReport } from "../src/eval/retrieval.ts";
import { ENGINE_FLAG_OPTIONS, intFlag, loadEngine } from "./flags.ts";
import { KV_FLAG_OPTIONS, KV_FLAGS_HELP, parseKvFlags } from "./kv-flags.ts";

export const EVAL_HELP = `kvc eval --model PATH (--data FILE.jsonl | --ppl FILE.txt) [options]

Retrieval (--data, repeatable): each JSONL line holds "prompt" (text or chat
messages), "question" (the prompt's tail) and "answer"; the greedy output is
correct when its first run of digits equals the answer. Prints accuracy per
(task, context_tokens), overall, and the mean achieved compression rate.
Perplexity (--ppl, repeatable): teacher-forced over the text (cut to the model's
context), compressed as the text streams (continual mode).

options:
  --model PATH       Hugging Face model folder or GGUF file (default: the embedded kvc-nano)
  --data FILE.jsonl  retrieval tasks
  --ppl FILE.txt     perplexity text
  --query-aware      prefill the whole prompt, then compress (as the server does);
                     default: query-agnostic (compress the context, then feed the question)
  --limit N          first N instances of each file
  --batch N          sequences in flight at once (default 16)
  --max-tokens N     answer length (default 12)
  --kv-memory SIZE   KV cache budget, e.g. 512MiB or 2GiB
  --quantize TYPE    quantize f16 weights on the GPU as they load: q8_0 | q4_0 | q4_k
  --json             one JSON object: {"overall": {"accuracy", "n"}, "cells": [...],
                     "compression_rate_mean"} (+ "ppl": [...] with --ppl)

KV compression:
${KV_FLAGS_HELP}`;

export async function evalCommand(argv: string[]) {
  const { values: a } = parseArgs({
    args: argv,
    options: {
      ...ENGINE_FLAG_OPTIONS,
      data: { type: "string", multiple: true },
      ppl: { type: "string", multiple: true },
      "query-aware": { type: "boolean" },
      limit: { type: "string" },
      batch: { type: "string" },
      "max-tokens": { type: "string" },
      ...KV_FLAG_OPTIONS,
    },
    strict: true,
  });
  if (a.help) {
    console.log(EVAL_HELP);
    return;
  }
  const data = a.data ?? [], ppl = a.ppl ?? [];
  if (!data.length && !ppl.length) throw new Error("give --data FILE.jsonl and/or --ppl FILE.txt (see kvc eval --help)");
  const limit = intFlag(a.limit, "limit", Number.MAX_SAFE_INTEGER, 1);
  const batch = intFlag(a.batch, "batch", 16, 1);
  const maxTokens = intFlag(a["max-tokens"], "max-tokens", 12, 1);
  const compression = parseKvFlags(a as Record<string, string | boolean | undefined>);
  const instances = data.flatMap((f) => loadInstances(f).slice(0, limit));
  const engine = await loadEngine(a);
  try {
    const out: Partial<RetrievalReport> & { ppl?: unknown[] } = {};
    if (instances.length) {
      const results = await runRetrieval(engine, instances, { compression, queryAware: !!a["query-aware"], batch, maxTokens });
      Object.assign(out, summarize(results));
    }
    if (ppl.length) {
      out.ppl = [];
      for (const f of ppl) {
        const ids = engine.tokenizer.encode(readFileSync(f, "utf8")).slice(0, engine.cfg.maxContext);
        const { nll, kv } = await engine.perplexity(ids, compression);
        const mean = nll.reduce((s, x) => s + x, 0) / nll.length;
        out.ppl.push({ file: basename(f), tokens: ids.length, nll_mean: mean, perplexity: Math.exp(mean), compression_rate: kv.compressionRate });
      }
    }
    if (a.json) {
      console.log(JSON.stringify(out));
      return;
    }
    if (out.cells) {
      console.log("task              context  accuracy     n");
      for (const c of out.cells) console.log(`${c.task.padEnd(18)}${String(c.context_tokens).padStart(7)}  ${(100 * c.accuracy).toFixed(1).padStart(7)}%  ${String(c.n).padStart(4)}`);
      console.log(`overall                    ${(100 * out.overall!.accuracy).toFixed(1).padStart(7)}%  ${String(out.overall!.n).padStart(4)}`);
      console.log(`mean achieved compression rate: ${out.compression_rate_mean!.toFixed(2)}x`);
    }
    for (const p of (out.ppl ?? []) as { file: string; tokens: number; perplexity: number; compression_rate: number }[]) {
      console.log(`perplexity ${p.file}: ${p.perplexity.toFixed(2)} over ${p.tokens} tokens (compression ${p.compression_rate.toFixed(2)}x)`);
    }
  } finally {
    engine.destroy();
  }
}
