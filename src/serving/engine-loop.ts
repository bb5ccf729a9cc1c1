// EngineLoop: the one background task that drives `engine.step()` for the server.
// It steps while any sequence waits or runs and sleeps on a promise when idle;
// `add` wakes it. Sequences added between steps join the next step (continuous
// batching). A failed step fails only the sequences it concerns and serving goes on.
import type { Engine } from "../engine/engine.ts";
import type { FinishReason, Sequence } from "../engine/sequence.ts";

type OnFail = (err: Error) => void;

export class EngineLoop {
  /** failure callback of every sequence added and not yet seen finished */
  private live = new Map<Sequence, OnFail>();
  /** cancels asked for while a step ran, applied right after it */
  private deferred: [Sequence, FinishReason][] = [];
  private stepping = false;
  private stopped = false;
  private wake: (() => void) | null = null;
  private done: Promise<void> | null = null;

  constructor(private engine: Engine, private log: (msg: string) => void = () => {}) {}

  start() {
    this.done ??= this.run();
  }

  /** Queues a sequence; throws the engine's message when it refuses the prompt. */
  add(seq: Sequence, onFail: OnFail) {
    if (this.stopped) throw new Error("the server is shutting down");
    this.engine.add(seq);
    this.live.set(seq, onFail);
    this.wake?.();
  }

  /**
   * Ends a sequence and frees its blocks. While a step is in flight the cancel waits
   * for it to end (so within one step): the engine's prefill bookkeeping after its
   * GPU readback assumes the batch's sequences are still in `waiting`, and a
   * sequence cancelled under it would take another waiting sequence out instead.
   */
  cancel(seq: Sequence, reason: FinishReason) {
    if (seq.finished) return;
    if (this.stepping) this.deferred.push([seq, reason]);
    else this.engine.cancel(seq, reason);
  }

  /** Stops stepping once the current step ends; sequences left are the caller's to cancel first. */
  async stop() {
    this.stopped = true;
    this.wake?.();
    await this.done;
  }

  private async run() {
    while (!this.stopped) {
      this.applyDeferred();
      this.forgetFinished();
      if (this.engine.idle) {
        await new Promise<void>((r) => (this.wake = r));
        this.wake = null;
        continue;
      }
      const inStep = [...this.engine.waiting, ...this.engine.running].filter((s) => !s.finished);
      this.stepping = true;
      try {
        await this.engine.step();
      } catch (e) {
        this.failStep(inStep, e as Error);
        await new Promise((r) => setTimeout(r, 0)); // never spin hot on a repeating failure
      } finally {
        this.stepping = false;
      }
    }
    this.applyDeferred();
  }

  /**
   * A step threw. The sequences it finished on the way out are the ones it was
   * about (e.g. a prompt the cache can never hold); when it finished none, the
   * failure concerns the whole batch, so every sequence of the step fails.
   */
  private failStep(inStep: Sequence[], err: Error) {
    const finished = inStep.filter((s) => s.finished);
    const affected = finished.length ? finished : inStep;
    this.log(`step failed (${affected.length} request(s) ended): ${err.message}`);
    for (const s of affected) {
      this.engine.cancel(s, "abort");
      this.live.get(s)?.(err);
      this.live.delete(s);
    }
  }

  private applyDeferred() {
    const d = this.deferred;
    this.deferred = [];
    for (const [seq, reason] of d) this.engine.cancel(seq, reason);
  }

  private forgetFinished() {
    for (const s of this.live.keys()) if (s.finished) this.live.delete(s);
  }
}
