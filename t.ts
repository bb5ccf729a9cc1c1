import { Sequence } from "./src/engine/sequence.ts";
import { Engine } from "./src/engine/engine.ts";
for (const name of ["kvc-nano","kvc-small"]) {
const g = JSON.parse(require("fs").readFileSync(`../shared/models/${name}/golden.json`, "utf8"));
const e = await Engine.load(`../shared/models/${name}`, {kvMemory: 64*2**20, prefillChunk: Number(process.env.CH ?? 512)});
for (const p of g.prompts) {
  const s = new Sequence(p.prompt_ids, { maxTokens: 32, sampling: { temperature: 0, topP: 1, topK: 0, seed: 0 }, ignoreEos: true, captureLogits: true });
  e.add(s); await e.runUntilIdle();
  let d = 0; for (const [id, v] of p.top10_first8_steps[0]) d = Math.max(d, Math.abs(s.firstLogits![id] - v));
  const firstDiff = s.output.findIndex((x, i) => x !== p.greedy_ids[i]);
  console.log(name, p.name, p.prompt_ids.length, "top10 maxdiff", d.toFixed(4), "first mismatch", firstDiff, firstDiff>=0 ? [s.output[firstDiff], p.greedy_ids[firstDiff]] : "");
}
}
process.exit(0);
