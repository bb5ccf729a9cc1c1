// GPU timing for benchmarks: capture the dispatches a step would run, then replay a
// chosen subset many times in one compute pass bracketed by timestamp queries (wall
// clock around submit + completion where the adapter has no timestamp-query). One
// long pass per figure keeps a coarse or quantized timer honest: the pass time is
// divided by the repetitions.
import { Usage, MapRead } from "../src/gpu/flags.ts";
import { readBuffer } from "../src/gpu/buffers.ts";
import { checkGpuErrors } from "../src/gpu/device.ts";
import { cdiv, type CapturedDispatch, type KernelContext } from "../src/gpu/kernels.ts";

export type { CapturedDispatch } from "../src/gpu/kernels.ts";

/** Runs `record` with the context capturing: the dispatches it would submit, unsubmitted. */
export function capture(kc: KernelContext, record: () => void): CapturedDispatch[] {
  if (kc.captured) throw new Error("capture() does not nest");
  const out: CapturedDispatch[] = [];
  kc.captured = out;
  try {
    record();
  } finally {
    kc.captured = null;
  }
  return out;
}

export interface Timing {
  /** GPU time of one repetition of the dispatch list, in milliseconds (median over passes) */
  ms: number;
  /** every pass's time per repetition, ms */
  samples: number[];
  reps: number;
  source: "timestamp" | "wall";
  /** timer granularity seen: Dawn quantizes timestamps to 65536 ns unless told otherwise */
  resolutionNs: number;
}

export interface TimeOptions {
  /** aim for passes at least this long (ms); repetitions are calibrated to it */
  minPassMs?: number;
  /** timed passes after one warm-up pass */
  passes?: number;
  /** cap on dispatches recorded into one pass */
  maxDispatches?: number;
}

export class GpuTimer {
  private querySet: GPUQuerySet | null = null;
  private resolve: GPUBuffer | null = null;
  private readback: GPUBuffer | null = null;
  readonly source: "timestamp" | "wall";
  /** every timestamp read so far was a multiple of 65536 ns */
  private quantized = true;

  constructor(private kc: KernelContext) {
    const g = kc.gpu;
    this.source = g.features.timestamps ? "timestamp" : "wall";
    if (this.source === "timestamp") {
      this.querySet = g.device.createQuerySet({ type: "timestamp", count: 2 });
      this.resolve = g.device.createBuffer({ size: 16, usage: Usage.QUERY_RESOLVE | Usage.COPY_SRC });
      this.readback = g.device.createBuffer({ size: 16, usage: Usage.MAP_READ | Usage.COPY_DST });
    }
  }

  /**
   * Milliseconds of one pass that runs `list` `reps` times back to back. Each captured
   * dispatch gets one params slot and one bind group for all its repetitions.
   */
  async pass(list: CapturedDispatch[], reps: number): Promise<number> {
    const { kc } = this;
    const dev = kc.device;
    const words = kc.reserveParams(list.length);
    const groups = list.map((d, slot) => {
      words.fill(0, slot * 64, slot * 64 + 16);
      words.set(d.params, slot * 64); // 256-byte slots of u32 words
      return kc.bindGroup(d.k, d.bindings, slot);
    });
    kc.uploadParams(list.length);
    const enc = dev.createCommandEncoder();
    const ts = this.querySet ? { querySet: this.querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } : undefined;
    const pass = enc.beginComputePass(ts ? { timestampWrites: ts } : {});
    for (let r = 0; r < reps; r++) {
      list.forEach((d, i) => {
        pass.setPipeline(d.k.pipeline);
        pass.setBindGroup(0, groups[i]);
        pass.dispatchWorkgroups(d.wg[0], d.wg[1], d.wg[2]);
      });
    }
    pass.end();
    if (this.querySet) {
      enc.resolveQuerySet(this.querySet, 0, 2, this.resolve!, 0);
      enc.copyBufferToBuffer(this.resolve!, 0, this.readback!, 0, 16);
    }
    const t0 = performance.now();
    dev.queue.submit([enc.finish()]);
    if (!this.readback) {
      await dev.queue.onSubmittedWorkDone();
      checkGpuErrors(kc.gpu);
      return performance.now() - t0;
    }
    await this.readback.mapAsync(MapRead);
    const t = new BigUint64Array(this.readback.getMappedRange().slice(0));
    this.readback.unmap();
    checkGpuErrors(kc.gpu);
    if (t[0] % 65536n !== 0n || t[1] % 65536n !== 0n) this.quantized = false;
    const ns = Number(t[1] - t[0]);
    // a timer that wrapped or was not written reads as nonsense: fall back to the host clock
    if (!(ns > 0) || t[1] < t[0]) return performance.now() - t0;
    return ns / 1e6;
  }

  /** Per-repetition time of `list`, calibrated so each pass lasts at least `minPassMs`. */
  async time(list: CapturedDispatch[], o: TimeOptions = {}): Promise<Timing> {
    const minPassMs = o.minPassMs ?? 20;
    const passes = o.passes ?? 5;
    const maxReps = Math.max(1, Math.floor((o.maxDispatches ?? 20000) / Math.max(1, list.length)));
    if (!list.length) throw new Error("nothing to time");
    // warm-up (pipelines, first-touch paging), then grow the repetitions until a pass
    // is long enough: a short pass can read as 0 or one timer quantum
    await this.pass(list, 1);
    let reps = 1;
    let t = await this.pass(list, reps);
    while (t < minPassMs / 2 && reps < maxReps) {
      reps = Math.min(maxReps, reps * (t > 0 ? Math.max(2, Math.ceil(minPassMs / t)) : 16));
      t = await this.pass(list, reps);
    }
    if (t < minPassMs && t > 0) reps = Math.min(maxReps, Math.ceil((reps * minPassMs) / t));
    const samples: number[] = [];
    for (let p = 0; p < passes; p++) samples.push((await this.pass(list, reps)) / reps);
    return { ms: median(samples), samples, reps, source: this.source, resolutionNs: this.resolutionNs };
  }

  /**
   * copyBufferToBuffer, wall clock (copies sit outside compute passes, where
   * timestamps can't bracket them): ms per copy of `bytes`. Copies per submit double
   * from `reps` until a submit lasts `minPassMs` past its fixed cost.
   */
  async timeBufferCopy(src: GPUBuffer, dst: GPUBuffer, bytes: number, reps: number, passes = 5, minPassMs = 50): Promise<Timing> {
    const dev = this.kc.device;
    const run = async (n: number) => {
      const enc = dev.createCommandEncoder();
      for (let r = 0; r < n; r++) enc.copyBufferToBuffer(src, 0, dst, 0, bytes);
      const t0 = performance.now();
      dev.queue.submit([enc.finish()]);
      await dev.queue.onSubmittedWorkDone();
      return performance.now() - t0;
    };
    await run(1);
    // the fixed cost of a submit + completion wait, measured with one copy, is taken out
    const base = median([await run(1), await run(1), await run(1)]);
    while (reps < 4096 && (await run(reps + 1)) - base < minPassMs) reps *= 2;
    const samples: number[] = [];
    for (let p = 0; p < passes; p++) samples.push(Math.max(1e-6, (await run(reps + 1)) - base) / reps);
    checkGpuErrors(this.kc.gpu);
    return { ms: median(samples), samples, reps, source: "wall", resolutionNs: 1000 };
  }

  get resolutionNs(): number {
    return this.source === "wall" ? 1000 : this.quantized ? 65536 : 1;
  }

  destroy() {
    this.querySet?.destroy();
    this.resolve?.destroy();
    this.readback?.destroy();
  }
}

/**
 * Timestamps around the compute passes that real steps record (set as
 * KernelContext.passTimer): each pass's GPU time and the idle gap before the next
 * one, which shows whether the GPU waits on the host between decode steps.
 */
export class PassTimer {
  private querySet: GPUQuerySet;
  private resolveBuf: GPUBuffer;
  used = 0;
  /** each pass's name: its first kernel */
  readonly labels: string[] = [];

  constructor(private device: GPUDevice, readonly capacity = 1024) {
    this.querySet = device.createQuerySet({ type: "timestamp", count: 2 * capacity });
    // a resolve lands at a 256-byte aligned offset: one such slot per pass
    this.resolveBuf = device.createBuffer({ size: 256 * capacity, usage: Usage.QUERY_RESOLVE | Usage.COPY_SRC });
  }

  /** Timestamp writes for the next pass, or none once full. */
  next(label = ""): GPUComputePassTimestampWrites | undefined {
    if (this.used >= this.capacity) return undefined;
    const i = this.used++;
    this.labels.push(label);
    return { querySet: this.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 };
  }

  /** Resolves the passes [from, used) in `enc` (the encoder that recorded them). */
  resolve(enc: GPUCommandEncoder, from: number) {
    for (let i = from; i < this.used; i++) enc.resolveQuerySet(this.querySet, 2 * i, 2, this.resolveBuf, 256 * i);
  }

  /** Per pass: GPU ms, and ms idle before the next pass begins (NaN after the last). */
  async read(): Promise<{ busyMs: number[]; gapMs: number[] }> {
    const n = this.used;
    if (n === 0) return { busyMs: [], gapMs: [] };
    const t = new BigInt64Array(await readBuffer(this.device, this.resolveBuf, 0, 256 * n));
    const busyMs: number[] = [], gapMs: number[] = [];
    for (let i = 0; i < n; i++) {
      busyMs.push(Number(t[32 * i + 1] - t[32 * i]) / 1e6);
      gapMs.push(i + 1 < n ? Number(t[32 * i + 32] - t[32 * i + 1]) / 1e6 : NaN);
    }
    return { busyMs, gapMs };
  }

  destroy() {
    this.querySet.destroy();
    this.resolveBuf.destroy();
  }
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** A 1- or 2-D grid of 256-thread workgroups covering n items (x capped by the adapter). */
export function grid256(n: number, maxX = 65535): [number, number, number] {
  const groups = Math.max(1, cdiv(n, 256));
  const x = Math.min(groups, maxX);
  return [x, cdiv(groups, x), 1];
}
