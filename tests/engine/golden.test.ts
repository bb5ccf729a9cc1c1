// Golden outputs from Hugging Face transformers (float32): greedy ids must match
// exactly and first-step logits stay within 2e-2.
import { describe, expect, test } from "bun:test";
import { Sequence } from "../../src/engine/sequence.ts";
import { engineFor, GREEDY, modelDir, readJsonFile } from "../fixtures/helpers.ts";

const TOL = 2e-2;

// KVC_GOLDEN_MODELS narrows the list (a GPU host that carries only some of the models)
for (const name of process.env.KVC_GOLDEN_MODELS?.split(",") ?? ["kvc-nano", "kvc-small"]) {
  describe(`golden ${name}`, () => {
    const golden = readJsonFile(`${modelDir(name)}/golden.json`);
    for (const [pi, p] of (golden.prompts as any[]).entries()) {
      test(`${p.name}: ${golden.n_new_tokens} greedy ids and first-step logits`, async () => {
        const engine = await engineFor(modelDir(name));
        const ids = p.kind === "chat" ? engine.tokenizer.encodeChat(p.messages) : engine.tokenizer.encode(p.text);
        expect(ids).toEqual(p.prompt_ids);
        const seq = new Sequence(p.prompt_ids, { maxTokens: golden.n_new_tokens, sampling: GREEDY, ignoreEos: true, captureLogits: true });
        engine.add(seq);
        await engine.runUntilIdle();
        expect(seq.output).toEqual(p.greedy_ids);
        expect(engine.tokenizer.decode(seq.output, false)).toBe(p.greedy_text);
        const logits = seq.firstLogits!;
        let maxTop = 0;
        for (const [id, v] of p.top10_first8_steps[0]) maxTop = Math.max(maxTop, Math.abs(logits[id] - v));
        expect(maxTop).toBeLessThan(TOL);
        if (pi === 0) {
          const ref = golden.prompt1_first_step_logits as number[];
          let maxAll = 0;
          for (let i = 0; i < ref.length; i++) maxAll = Math.max(maxAll, Math.abs(logits[i] - ref[i]));
          expect(maxAll).toBeLessThan(TOL);
        }
        expect(engine.cache.pool.numUsedBlocks).toBe(0);
      }, 300_000);
    }
  });
}
