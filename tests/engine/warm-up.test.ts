// The warm-up (src/engine/warm-up.ts) reaches every pipeline: after it, a mix of
// requests like a server gets (each compression method and allocation, seeded and
// sampled, batches across the GEMV tiles, the tensor-core kernels (where the adapter has
// them) and past the GEMV, prompts short and past a
// prefill chunk, continual and one-shot compression) builds no new pipeline.
import { expect, test } from "bun:test";
import { Engine } from "../../src/engine/engine.ts";
import { EngineClient } from "../../src/engine/client.ts";
import { Sequence } from "../../src/engine/sequence.ts";
import type { CompressionOptions } from "../../src/cache/compression.ts";
import { GREEDY, ROOT } from "../fixtures/helpers.ts";

const pipelineKeys = (e: Engine) => new Set((e.kc as any).pipelines.keys() as Iterable<string>);

test("after the warm-up, a mix of requests compiles nothing new", async () => {
  const engine = await Engine.load(`${ROOT}/models/kvc-nano`, { kvMemory: 64 * 2 ** 20 });
  const client = new EngineClient(engine);
  client.start();
  try {
    const phases: string[] = [];
    const built = await client.warmUp((i, n, name) => phases.push(`${i + 1}/${n} ${name}`));
    expect(built).toBeGreaterThan(10);
    expect(phases.length).toBeGreaterThan(4);
    const warmed = pipelineKeys(engine);

    const tokens = (n: number, salt: number) => Array.from({ length: n }, (_, i) => 3 + ((i * 31 + salt * 977) % 8000));
    const run = async (group: { n: number; compression?: Partial<CompressionOptions>; seed?: number; maxTokens?: number }[]) => {
      const seqs = group.map((g, i) => new Sequence(tokens(g.n, i), {
        maxTokens: g.maxTokens ?? 20,
        sampling: g.seed === undefined ? GREEDY : { temperature: 0.8, topP: 0.95, topK: 50, seed: g.seed },
        ignoreEos: true,
        compression: g.compression,
        batchInvariant: g.seed !== undefined,
      }));
      const failed: Error[] = [];
      for (const s of seqs) client.submit(s, (e) => failed.push(e));
      await Promise.all(seqs.map((s) => s.wait()));
      expect(failed).toEqual([]);
    };
    await run([{ n: 40, compression: { method: "kvcompress", rate: 4 } }]);
    await run([{ n: 5 }, { n: 17 }, { n: 60 }]);
    await run([
      { n: 90, compression: { method: "snapkv", maxCacheTokens: 16 } },
      { n: 70, compression: { method: "streaming", rate: 4 } },
      { n: 80, compression: { method: "kvcrush", rate: 3, crushBase: "snapkv", crushAnchor: "random" } },
      { n: 85, compression: { method: "kvcompress", rate: 8, allocation: "pyramid", compressOnce: true } },
    ]);
    await run([{ n: 300, seed: 11 }]);
    await run([{ n: 12, seed: 5 }, { n: 200, seed: 6 }]);
    await run(Array.from({ length: 16 }, (_, i) => ({ n: 2 + i })));
    await run(Array.from({ length: 20 }, (_, i) => ({ n: 3 + i })));
    await run(Array.from({ length: 40 }, (_, i) => ({ n: 2 + (i % 7), maxTokens: 10 })));
    await run([{ n: 700, compression: { method: "kvcompress", rate: 16, allocation: "global" }, maxTokens: 40 }, { n: 1 }]);

    const fresh = [...pipelineKeys(engine)].filter((k) => !warmed.has(k));
    expect(fresh).toEqual([]);
  } finally {
    await client.stop();
    client.destroy();
  }
});
