// Retrieval evaluation (passkey, multi-key, chat multi-key): greedy answers scored
// by exact match of their first digit run. Two protocols:
//   query-agnostic (default): prefill the context (the prompt without its trailing
//     `question`), compress, then feed the question and decode (as kvpress and the
//     reference simulation do);
//   query-aware: prefill the whole prompt, then compress (as the server does).
import { readFileSync } from "node:fs";
import type { CompressionOptions } from "../cache/compression.ts";
import type { Engine } from "../engine/engine.ts";
import { Sequence } from "../engine/sequence.ts";
import type { ChatMessage, TextTokenizer } from "../model/tokenizer.ts";

export interface RetrievalInstance {
  id: string;
  task: string;
  context_tokens: number;
  /** raw text, or chat messages whose last one ends with the question */
  prompt: string | ChatMessage[];
  question: string;
  answer: string;
}

export interface InstanceResult {
  id: string;
  task: string;
  contextTokens: number;
  output: string;
  correct: boolean;
  /** uncompressed blocks / blocks used, at the end of the answer */
  compressionRate: number;
}

export interface Cell {
  task: string;
  context_tokens: number;
  accuracy: number;
  n: number;
}

export interface RetrievalReport {
  overall: { accuracy: number; n: number };
  cells: Cell[];
  compression_rate_mean: number;
}

export function loadInstances(path: string): RetrievalInstance[] {
  const lines = readFileSync(path, "utf8").split("\n").filter((l) => l.trim());
  return lines.map((l, i) => {
    let x: any;
    try {
      x = JSON.parse(l);
    } catch {
      throw new Error(`${path}:${i + 1}: not JSON`);
    }
    const chat = Array.isArray(x.prompt);
    const promptOk = chat ? x.prompt.every((m: any) => typeof m?.role === "string" && typeof m?.content === "string") : typeof x.prompt === "string";
    if (!promptOk || typeof x.question !== "string" || typeof x.answer !== "string") {
      throw new Error(`${path}:${i + 1}: needs "prompt" (text or chat messages), "question" and "answer" strings`);
    }
    return { id: String(x.id ?? i), task: String(x.task ?? "task"), context_tokens: Number(x.context_tokens ?? 0), prompt: x.prompt, question: x.question, answer: x.answer };
  });
}

/** Token ids of the prompt and where its context ends (the question follows). */
export function promptIds(tk: TextTokenizer, x: RetrievalInstance): { ids: number[]; contextLen: number } {
  let text: string, special: boolean;
  if (typeof x.prompt === "string") {
    text = x.prompt;
    special = true;
  } else {
    text = tk.renderChat(x.prompt);
    special = false; // the template carries BOS
  }
  let at = text.lastIndexOf(x.question);
  if (at < 0) throw new Error(`instance ${x.id}: its question is not in its prompt`);
  // the pre-tokenizer joins a word to the space before it: split before that space
  while (at > 0 && /\s/.test(text[at - 1])) at--;
  const ids = tk.encode(text, special);
  const ctx = tk.encode(text.slice(0, at), special);
  // where the split still falls inside a token, feed the two parts as split
  const aligned = ctx.every((t, i) => ids[i] === t);
  return aligned ? { ids, contextLen: ctx.length } : { ids: [...ctx, ...tk.encode(text.slice(at), false)], contextLen: ctx.length };
}

export const firstDigits = (s: string): string | null => /\d+/.exec(s)?.[0] ?? null;

export interface RetrievalOptions {
  compression: Partial<CompressionOptions>;
  queryAware: boolean;
  /** sequences in flight at once */
  batch?: number;
  maxTokens?: number;
}

export async function runRetrieval(engine: Engine, instances: RetrievalInstance[], o: RetrievalOptions): Promise<InstanceResult[]> {
  const { compression, ...rest } = o;
  return (await runRetrievalSweep(engine, instances, { ...rest, variants: [compression] }))[0];
}

export interface SweepOptions extends Omit<RetrievalOptions, "compression"> {
  /** compression settings, each run over every instance (results in this order) */
  variants: Partial<CompressionOptions>[];
}

/**
 * Every instance under each of several compression settings, prefilling it once: the
 * first compressing variant's sequence carries the others as forks (Sequence.forks),
 * which copy its cache where it compresses. `batch` counts instances, so the engine
 * needs batch * variants sequence slots. The variants must share the observation window.
 */
export async function runRetrievalSweep(engine: Engine, instances: RetrievalInstance[], o: SweepOptions): Promise<InstanceResult[][]> {
  const tk = engine.tokenizer;
  const out: InstanceResult[][] = o.variants.map(() => []);
  const batch = o.batch ?? 16;
  const lead = Math.max(0, o.variants.findIndex((c) => (c.method ?? "none") !== "none"));
  const order = [lead, ...o.variants.map((_, i) => i).filter((i) => i !== lead)];
  // forks need a parent that compresses: without one, every variant prefills on its own
  const forking = (o.variants[lead].method ?? "none") !== "none";
  for (let i = 0; i < instances.length; i += batch) {
    const group = instances.slice(i, i + batch).map((x) => {
      const { ids, contextLen } = promptIds(tk, x);
      const make = (v: number, forks?: Sequence[]) =>
        new Sequence(ids, {
          maxTokens: o.maxTokens ?? 12,
          sampling: { temperature: 0, topP: 1, topK: 0, seed: 0 },
          ignoreEos: false,
          compression: o.variants[v],
          compressAt: o.queryAware ? ids.length : contextLen,
          forks,
        });
      const seqs: Sequence[] = [];
      if (forking) {
        order.slice(1).forEach((v) => (seqs[v] = make(v)));
        seqs[lead] = make(lead, order.slice(1).map((v) => seqs[v]));
        engine.add(seqs[lead]);
      } else {
        o.variants.forEach((_, v) => engine.add((seqs[v] = make(v))));
      }
      return { x, seqs };
    });
    await engine.runUntilIdle();
    for (const { x, seqs } of group) {
      seqs.forEach((seq, v) => {
        const output = tk.decode(seq.output);
        out[v].push({ id: x.id, task: x.task, contextTokens: x.context_tokens, output, correct: firstDigits(output) === x.answer, compressionRate: seq.kv.compressionRate });
      });
    }
  }
  return out;
}

export function summarize(results: InstanceResult[]): RetrievalReport {
  const cells = new Map<string, Cell & { hits: number }>();
  for (const r of results) {
    const key = `${r.task}\u0000${r.contextTokens}`;
    const c = cells.get(key) ?? { task: r.task, context_tokens: r.contextTokens, accuracy: 0, n: 0, hits: 0 };
    c.n++;
    if (r.correct) c.hits++;
    cells.set(key, c);
  }
  const list = [...cells.values()]
    .sort((a, b) => a.task.localeCompare(b.task) || a.context_tokens - b.context_tokens)
    .map(({ hits, ...c }) => ({ ...c, accuracy: hits / c.n }));
  const hits = results.filter((r) => r.correct).length;
  const n = results.length;
  return {
    overall: { accuracy: n ? hits / n : 0, n },
    cells: list,
    compression_rate_mean: n ? results.reduce((a, r) => a + r.compressionRate, 0) / n : 1,
  };
}
