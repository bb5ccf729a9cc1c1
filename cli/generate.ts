// `kvc generate`: one prompt through the engine, printed as text or one JSON object.
import { parseArgs } from "node:util";
import { Sequence } from "../src/engine/sequence.ts";
import { IncrementalDecoder, type ChatMessage } from "../src/model/tokenizer.ts";
import { ENGINE_FLAG_OPTIONS, intFlag, loadEngine, numberFlag } from "./flags.ts";
import { KV_FLAG_OPTIONS, KV_FLAGS_HELP, parseKvFlags } from "./kv-flags.ts";

export const GENERATE_HELP = `kvc generate --model PATH (--prompt TEXT | --prompt-ids 1,2,3 | --messages JSON) [options]

  --model PATH         HF model folder or GGUF file (default: the embedded kvc-nano)
  --prompt TEXT        text prompt; the tokenizer adds BOS as the model expects
  --prompt-ids IDS     comma-separated token ids, fed as given (no BOS added)
  --messages JSON      chat messages [{"role","content"}...], rendered by the chat template
  --max-tokens N       tokens to generate (default 64)
  --temperature T      0 = greedy (default 0)
  --top-p P            nucleus sampling mass (default 1 = off)
  --top-k K            keep the K most likely tokens (default 0 = off)
  --seed S             sampling seed (default random)
  --ignore-eos         keep generating past end-of-sequence tokens
  --kv-memory SIZE     KV cache budget, e.g. 512MiB or 2GiB
  --quantize TYPE      quantize f16 weights on the GPU as they load: q8_0 | q4_0 | q4_k
  --json               print one JSON object instead of streaming text

KV compression:
${KV_FLAGS_HELP}`;

export async function generateCommand(argv: string[]) {
  const { values: a } = parseArgs({
    args: argv,
    options: {
      ...ENGINE_FLAG_OPTIONS,
      prompt: { type: "string" },
      "prompt-ids": { type: "string" },
      messages: { type: "string" },
      "max-tokens": { type: "string" },
      temperature: { type: "string" },
      "top-p": { type: "string" },
      "top-k": { type: "string" },
      seed: { type: "string" },
      "ignore-eos": { type: "boolean" },
      ...KV_FLAG_OPTIONS,
    },
    strict: true,
  });
  if (a.help) {
    console.log(GENERATE_HELP);
    return;
  }
  const given = [a.prompt, a["prompt-ids"], a.messages].filter((x) => x !== undefined).length;
  if (given !== 1) throw new Error("give exactly one of --prompt, --prompt-ids, --messages");
  const maxTokens = intFlag(a["max-tokens"], "max-tokens", 64, 1);
  const temperature = numberFlag(a.temperature, "temperature", 0, (x) => x >= 0, ">= 0");
  const topP = numberFlag(a["top-p"], "top-p", 1, (x) => x > 0 && x <= 1, "in (0, 1]");
  const topK = intFlag(a["top-k"], "top-k", 0, 0);
  const seed = numberFlag(a.seed, "seed", Math.floor(Math.random() * 2 ** 32), (x) => Number.isInteger(x) && x >= 0 && x < 2 ** 32, "an integer in [0, 2^32)");
  const compression = parseKvFlags(a);
  const engine = await loadEngine(a);
  try {
    const tk = engine.tokenizer;
    let prompt: number[];
    if (a["prompt-ids"] !== undefined) {
      prompt = a["prompt-ids"].split(",").map((s) => {
        const x = Number(s.trim());
        if (!Number.isInteger(x) || x < 0) throw new Error(`--prompt-ids: "${s}" is not a token id`);
        return x;
      });
    } else if (a.messages !== undefined) {
      let msgs: ChatMessage[];
      try {
        msgs = JSON.parse(a.messages);
      } catch {
        throw new Error("--messages is not valid JSON");
      }
      if (!Array.isArray(msgs) || msgs.some((m) => typeof m?.role !== "string" || typeof m?.content !== "string")) {
        throw new Error('--messages must be a JSON array of {"role": string, "content": string}');
      }
      prompt = tk.encodeChat(msgs);
    } else prompt = tk.encode(a.prompt!);
    const dec = new IncrementalDecoder(tk);
    const stream = !a.json;
    const seq = new Sequence(prompt, {
      maxTokens,
      sampling: { temperature, topP, topK, seed },
      ignoreEos: !!a["ignore-eos"],
      compression,
      onToken: stream ? (id) => writeOut(dec.push(id)) : undefined,
    });
    engine.add(seq);
    await engine.runUntilIdle();
    const text = tk.decode(seq.output);
    if (stream) {
      writeOut(dec.flush() + "\n");
      return;
    }
    console.log(JSON.stringify({
      text,
      token_ids: seq.output,
      prompt_token_ids: prompt,
      finish_reason: seq.finishReason,
      usage: { prompt_tokens: prompt.length, completion_tokens: seq.output.length },
      kv_cache: {
        blocks_used: seq.kv.blocksUsed,
        block_size: engine.cache.blockSize,
        tokens_kept: seq.kv.tokensKept,
        blocks_uncompressed: seq.kv.blocksUncompressed,
        tokens_logical: seq.kv.contextTokens,
        compression_rate: seq.kv.compressionRate,
        evicted_tokens: seq.kv.evictedTokens,
      },
    }));
  } finally {
    engine.destroy();
  }
}

function writeOut(s: string) {
  if (s) (globalThis as any).process.stdout.write(s);
}
