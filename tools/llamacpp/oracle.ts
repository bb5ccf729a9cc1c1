// llama.cpp (node-llama-cpp's prebuilt CPU build) as the oracle of kvc's GGUF support:
// for a GGUF file and prompts given as token ids, its greedy continuations and the
// first step's log-probabilities. Runs under Bun and Node.
import { getLlama, LlamaLogLevel, type Llama } from "node-llama-cpp";

let llamaP: Promise<Llama> | null = null;
const cpuLlama = () => (llamaP ??= getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error }));

export interface OracleRun {
  /** greedy tokens after each prompt (end-of-generation tokens included, never stopping early) */
  greedy: number[][];
  /**
   * per prompt and step of the greedy path: log p of each token whose probability is at
   * least 1e-6 (smaller ones underflow llama.cpp's f32 softmax)
   */
  logProbs: Map<number, number>[][];
}

/** Greedy decoding of `steps` tokens after each prompt, one context of `contextSize` tokens, one thread. */
export async function llamaCppGreedy(file: string, prompts: number[][], steps: number, contextSize: number): Promise<OracleRun> {
  const llama = await cpuLlama();
  const model = await llama.loadModel({ modelPath: file });
  const ctx = await model.createContext({ contextSize, sequences: 1, threads: 1 });
  const seq = ctx.getSequence();
  const out: OracleRun = { greedy: [], logProbs: [] };
  try {
    for (const prompt of prompts) {
      await seq.clearHistory();
      const toks: number[] = [];
      const perStep: Map<number, number>[] = [];
      for await (const r of seq.evaluateWithMetadata(prompt as any, { probabilities: true }, { temperature: 0, yieldEogToken: true })) {
        const logp = new Map<number, number>();
        for (const [t, p] of r.probabilities) if (p >= 1e-6) logp.set(t, Math.log(p));
        perStep.push(logp);
        toks.push(r.token);
        if (toks.length >= steps) break;
      }
      out.greedy.push(toks);
      out.logProbs.push(perStep);
    }
  } finally {
    await ctx.dispose();
    await model.dispose();
  }
  return out;
}
