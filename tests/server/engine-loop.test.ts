// EngineLoop against a scripted stand-in for the engine (the real one is covered
// over HTTP): it sleeps when idle and wakes on add, defers cancels that arrive
// mid-step to right after the step, and a failing step ends only the requests it
// concerns while serving goes on.
import { expect, test } from "bun:test";
import { EngineLoop } from "../../src/serving/engine-loop.ts";
import { Sequence } from "../../src/engine/sequence.ts";
import type { Engine } from "../../src/engine/engine.ts";
import { GREEDY } from "../fixtures/helpers.ts";

/** Steps finish one token per running sequence; `failNext` makes a step throw. */
class ScriptedEngine {
  waiting: Sequence[] = [];
  running: Sequence[] = [];
  steps = 0;
  inStep = false;
  cancelsInStep = 0;
  failNext: ((e: ScriptedEngine) => void) | null = null;
  add(s: Sequence) {
    this.waiting.push(s);
  }
  get idle() {
    return !this.waiting.length && !this.running.length;
  }
  cancel(s: Sequence, reason: "stop" | "length" | "abort") {
    if (this.inStep) this.cancelsInStep++;
    this.waiting = this.waiting.filter((x) => x !== s);
    this.running = this.running.filter((x) => x !== s);
    s.finish(reason);
  }
  async step() {
    this.inStep = true;
    this.steps++;
    await Bun.sleep(5);
    this.inStep = false;
    const fail = this.failNext;
    this.failNext = null;
    if (fail) {
      fail(this);
      throw new Error("device lost");
    }
    this.running.push(...this.waiting.splice(0));
    for (const s of [...this.running]) {
      s.output.push(1);
      if (s.output.length >= s.opts.maxTokens) this.cancel(s, "length");
    }
  }
}

const seq = (maxTokens = 3) => new Sequence([1, 2], { maxTokens, sampling: GREEDY, ignoreEos: true });

test("idle loop sleeps, wakes on add, and runs to the end", async () => {
  const e = new ScriptedEngine();
  const loop = new EngineLoop(e as unknown as Engine);
  loop.start();
  await Bun.sleep(20);
  expect(e.steps).toBe(0);
  const s = seq();
  loop.add(s, () => {});
  await s.wait();
  expect(s.finishReason).toBe("length");
  expect(s.output).toHaveLength(3);
  await loop.stop();
});

test("cancels during a step wait for it to end", async () => {
  const e = new ScriptedEngine();
  const loop = new EngineLoop(e as unknown as Engine);
  loop.start();
  const s = seq(100);
  loop.add(s, () => {});
  while (!e.inStep) await Bun.sleep(1);
  loop.cancel(s, "abort");
  expect(s.finished).toBe(false);
  await s.wait();
  expect(s.finishReason).toBe("abort");
  expect(e.cancelsInStep).toBe(0);
  await loop.stop();
});

test("a failing step fails the requests it finished, or else all of its batch", async () => {
  const run = async (fail: (a: Sequence) => void) => {
    const e = new ScriptedEngine();
    const loop = new EngineLoop(e as unknown as Engine);
    const failed: string[] = [];
    const [a, b] = [seq(5), seq(5)];
    loop.add(a, (err) => failed.push(`a: ${err.message}`));
    loop.add(b, (err) => failed.push(`b: ${err.message}`));
    e.failNext = () => fail(a);
    loop.start();
    await Promise.all([a.wait(), b.wait()]);
    // and the loop keeps serving
    const c = seq(2);
    loop.add(c, () => failed.push("c"));
    await c.wait();
    await loop.stop();
    return { failed: failed.sort(), reasons: [a, b, c].map((s) => s.finishReason) };
  };
  // the step gave up on `a` (as the engine does for a prompt the cache can never hold)
  expect(await run((a) => a.finish("length"))).toEqual({ failed: ["a: device lost"], reasons: ["length", "length", "length"] });
  // a step that finished nobody fails every sequence it ran
  expect(await run(() => {})).toEqual({ failed: ["a: device lost", "b: device lost"], reasons: ["abort", "abort", "length"] });
});
