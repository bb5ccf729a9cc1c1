// EngineClient's loop against a scripted stand-in for the engine (the real one is
// covered over HTTP): it sleeps when idle and wakes on submit, and a failing step
// ends only the requests it concerns while serving goes on. (Aborts asked mid-step
// are the engine's to defer: tests/engine/engine.test.ts.)
import { expect, test } from "bun:test";
import { EngineClient } from "../../src/engine/client.ts";
import { Sequence } from "../../src/engine/sequence.ts";
import type { Engine } from "../../src/engine/engine.ts";
import { GREEDY } from "../fixtures/helpers.ts";

/** Steps finish one token per running sequence; `failNext` makes a step throw. */
class ScriptedEngine {
  waiting: Sequence[] = [];
  running: Sequence[] = [];
  steps = 0;
  failNext: ((e: ScriptedEngine) => void) | null = null;
  add(s: Sequence) {
    this.waiting.push(s);
  }
  get idle() {
    return !this.waiting.length && !this.running.length;
  }
  abort(s: Sequence, reason: "stop" | "length" | "abort") {
    this.waiting = this.waiting.filter((x) => x !== s);
    this.running = this.running.filter((x) => x !== s);
    s.finish(reason);
  }
  async step() {
    this.steps++;
    await Bun.sleep(5);
    const fail = this.failNext;
    this.failNext = null;
    if (fail) {
      fail(this);
      throw new Error("device lost");
    }
    this.running.push(...this.waiting.splice(0));
    for (const s of [...this.running]) {
      s.output.push(1);
      if (s.output.length >= s.opts.maxTokens) this.abort(s, "length");
    }
  }
}

const seq = (maxTokens = 3) => new Sequence([1, 2], { maxTokens, sampling: GREEDY, ignoreEos: true });

test("idle loop sleeps, wakes on add, and runs to the end", async () => {
  const e = new ScriptedEngine();
  const loop = new EngineClient(e as unknown as Engine);
  loop.start();
  await Bun.sleep(20);
  expect(e.steps).toBe(0);
  const s = seq();
  loop.submit(s, () => {});
  await s.wait();
  expect(s.finishReason).toBe("length");
  expect(s.output).toHaveLength(3);
  await loop.stop();
});

test("a failing step fails the requests it finished, or else all of its batch", async () => {
  const run = async (fail: (a: Sequence) => void) => {
    const e = new ScriptedEngine();
    const loop = new EngineClient(e as unknown as Engine);
    const failed: string[] = [];
    const [a, b] = [seq(5), seq(5)];
    loop.submit(a, (err: Error) => failed.push(`a: ${err.message}`));
    loop.submit(b, (err: Error) => failed.push(`b: ${err.message}`));
    e.failNext = () => fail(a);
    loop.start();
    await Promise.all([a.wait(), b.wait()]);
    // and the loop keeps serving
    const c = seq(2);
    loop.submit(c, () => failed.push("c"));
    await c.wait();
    await loop.stop();
    return { failed: failed.sort(), reasons: [a, b, c].map((s) => s.finishReason) };
  };
  // the step gave up on `a` (as the engine does for a prompt the cache can never hold)
  expect(await run((a) => a.finish("length"))).toEqual({ failed: ["a: device lost"], reasons: ["length", "length", "length"] });
  // a step that finished nobody fails every sequence it ran
  expect(await run(() => {})).toEqual({ failed: ["a: device lost", "b: device lost"], reasons: ["abort", "abort", "length"] });
});
