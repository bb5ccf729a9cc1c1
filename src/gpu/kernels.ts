// WGSL loading, a tiny preprocessor, a pipeline cache keyed by everything that
// changes the code, and `Step`: one command encoder + one params upload + one submit.
import { readFileSync } from "node:fs";
import type { Gpu } from "./device.ts";
import { Usage } from "./flags.ts";
import { paramLayout, paramWords, type ParamLayout, type ParamValues } from "./params.ts";

export type Defines = Record<string, string | number | boolean>;

const sources = new Map<string, string>();

/** Kernel source by name; the single binary registers embedded sources here first. */
export function kernelSource(name: string): string {
  let s = sources.get(name);
  if (s === undefined) {
    s = readFileSync(new URL(`../../kernels/${name}.wgsl`, import.meta.url), "utf8");
    sources.set(name, s);
  }
  return s;
}
export function registerKernelSource(name: string, code: string) {
  sources.set(name, code);
}

/**
 * `#include NAME` pastes kernel source NAME (shared structs and helpers, no entry
 * point); `#if NAME` / `#if !NAME` / `#else` / `#endif` on boolean defines; then `#unroll VAR
 * COUNT` ... `#endunroll` repeats its lines COUNT times with `{{VAR}}` = 0, 1, ...
 * (COUNT: numbers and defines joined by * / + -, left to right, e.g. ROWS/2 or D/16-1; unrolls nest), so
 * private arrays index only by constants and stay in registers; then `{{NAME}}`
 * replaced by the define's value. Unknown names are an error, not a silent blank.
 * `@binding(#)` numbers the bindings that survive the `#if`s in order (a Step binds
 * buffers 0, 1, ... and the params uniform last), so optional bindings need no arithmetic.
 */
export function preprocess(src: string, defines: Defines): string {
  const out: string[] = [];
  const stack: { on: boolean; parentOn: boolean }[] = [];
  let on = true;
  for (const line of withIncludes(src, 0)) {
    const t = line.trim();
    const m = /^#if\s+(!?)(\w+)$/.exec(t);
    if (m) {
      if (!(m[2] in defines)) throw new Error(`WGSL #if on undefined name ${m[2]}`);
      const v = Boolean(defines[m[2]]) !== (m[1] === "!");
      stack.push({ on: v, parentOn: on });
      on = on && v;
      continue;
    }
    if (t === "#else") {
      const top = stack[stack.length - 1];
      if (!top) throw new Error("WGSL #else without #if");
      top.on = !top.on;
      on = top.parentOn && top.on;
      continue;
    }
    if (t === "#endif") {
      const top = stack.pop();
      if (!top) throw new Error("WGSL #endif without #if");
      on = top.parentOn;
      continue;
    }
    if (on) out.push(line);
  }
  if (stack.length) throw new Error("WGSL #if without #endif");
  let binding = 0;
  return unroll(out, defines).join("\n").replace(/@binding\(#\)/g, () => `@binding(${binding++})`).replace(/\{\{(\w+)\}\}/g, (_, k) => {
    if (!(k in defines)) throw new Error(`WGSL template name ${k} has no define`);
    return String(defines[k]);
  });
}

/** The lines of `src` with each `#include NAME` replaced by the lines of kernel source NAME (nested up to 4 deep). */
function withIncludes(src: string, depth: number): string[] {
  return src.split("\n").flatMap((line) => {
    const m = /^#include\s+(\w+)$/.exec(line.trim());
    if (!m) return [line];
    if (depth >= 4) throw new Error(`WGSL #include ${m[1]}: includes nest deeper than 4`);
    return withIncludes(kernelSource(m[1]), depth + 1);
  });
}

/** Expands the `#unroll` blocks of `lines` (see preprocess). */
function unroll(lines: string[], defines: Defines): string[] {
  const out: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const t = lines[i].trim();
    if (t === "#endunroll") throw new Error("WGSL #endunroll without #unroll");
    const m = /^#unroll\s+(\w+)\s+(\S+)$/.exec(t);
    if (!m) {
      out.push(lines[i]);
      continue;
    }
    let depth = 1;
    let j = i + 1;
    for (; j < lines.length; j++) {
      const u = lines[j].trim();
      if (u.startsWith("#unroll ")) depth++;
      else if (u === "#endunroll" && --depth === 0) break;
    }
    if (j === lines.length) throw new Error(`WGSL #unroll ${m[1]} without #endunroll`);
    const n = unrollCount(m[2], defines);
    const body = unroll(lines.slice(i + 1, j), defines);
    const mark = `{{${m[1]}}}`;
    for (let k = 0; k < n; k++) for (const l of body) out.push(l.replaceAll(mark, String(k)));
    i = j;
  }
  return out;
}

function unrollCount(expr: string, defines: Defines): number {
  const parts = expr.split(/([*/+-])/);
  const value = (p: string) => {
    const v = /^\d+$/.test(p) ? Number(p) : Number(defines[p]);
    if (!Number.isInteger(v) || v < 0) throw new Error(`WGSL #unroll count ${expr}: ${p} is not a whole number`);
    return v;
  };
  let n = value(parts[0]);
  // left to right, no precedence: D/16-1 is (D / 16) - 1
  for (let i = 1; i < parts.length; i += 2) {
    const v = value(parts[i + 1]);
    n = parts[i] === "*" ? n * v : parts[i] === "/" ? Math.floor(n / v) : parts[i] === "+" ? n + v : n - v;
  }
  if (n < 0) throw new Error(`WGSL #unroll count ${expr} is negative`);
  return n;
}

export interface Kernel {
  id: number;
  key: string;
  pipeline: GPUComputePipeline;
  /** its uniform `struct Params`, as the WGSL declares it */
  params: ParamLayout;
}

/** A kernel's `struct Params { K: u32, eps: f32, ... }`: field names in order, and which are f32. */
export type Binding = GPUBuffer | { buffer: GPUBuffer; offset?: number; size?: number };

/** One dispatch as a step recorded it, for replays under a timer (bench/profile.ts). */
export interface CapturedDispatch {
  k: Kernel;
  bindings: Binding[];
  params: number[];
  wg: [number, number, number];
}

const PARAM_SLOT = 256; // minUniformBufferOffsetAlignment
const PARAM_WORDS = 16; // 64 bytes of scalars per dispatch is enough for every kernel

export class KernelContext {
  readonly device: GPUDevice;
  private pipelines = new Map<string, Kernel>();
  private fastKernels = new Map<string, Kernel>();
  private bufIds = new WeakMap<GPUBuffer, number>();
  private nextBufId = 1;
  private bindGroups = new Map<string, GPUBindGroup>();
  private arena: GPUBuffer;
  private arenaSlots: number;
  private params: Uint32Array<ArrayBuffer>;
  /** while set, steps record their dispatches here and submit nothing (profiling) */
  captured: CapturedDispatch[] | null = null;
  /** while set, every compute pass a step records is timestamped (benchmarks) */
  passTimer: { used: number; next(label: string): GPUComputePassTimestampWrites | undefined; resolve(enc: GPUCommandEncoder, from: number): void } | null = null;

  constructor(readonly gpu: Gpu) {
    this.device = gpu.device;
    this.arenaSlots = 4096;
    this.arena = this.makeArena();
    this.params = new Uint32Array((this.arenaSlots * PARAM_SLOT) / 4);
  }

  private makeArena(): GPUBuffer {
    return this.device.createBuffer({
      label: "params-arena",
      size: this.arenaSlots * PARAM_SLOT,
      usage: Usage.UNIFORM | Usage.COPY_DST,
    });
  }

  /**
   * Base defines every kernel may use: the weight-load variant and reduction variant;
   * QUANT: the block format of quantized weights (src/model/quant.ts), false for f16;
   * PIECE, XWG, QMAGIC, XQ8, QPF: the quantized GEMV's piece path and its options
   * (src/model/quant-gemv.ts quantGemvDefines), off unless a call sets them.
   */
  baseDefines(): Defines {
    const f = this.gpu.features;
    return { F16: f.f16Weights, SUBGROUPS: f.subgroups, QUANT: false, PIECE: false, XWG: false, QMAGIC: false, XQ8: false, QPF: false };
  }

  /** Pipelines built so far (the warm-up reports how many it compiled). */
  get pipelineCount(): number {
    return this.pipelines.size;
  }

  kernel(name: string, defines: Defines = {}, entry = "main"): Kernel {
    // called for every dispatch of every step: look up by the defines as given first,
    // before building the sorted key (a different order only costs one more lookup)
    let fast = name + ":" + entry;
    for (const d in defines) fast += "," + d + "=" + defines[d];
    const hit = this.fastKernels.get(fast);
    if (hit) return hit;
    const k = this.buildKernel(name, defines, entry);
    this.fastKernels.set(fast, k);
    return k;
  }

  /** The WGSL a kernel compiles from: its source with these defines, behind the extensions it uses. */
  source(name: string, defines: Defines = {}): string {
    const all = { ...this.baseDefines(), ...defines };
    const code = preprocess(kernelSource(name), all);
    const enables: string[] = [];
    if (all.F16 || (this.gpu.features.f16 && /subgroup_matrix_/.test(code))) enables.push("enable f16;");
    if (all.SUBGROUPS && /subgroup/.test(code)) enables.push("enable subgroups;");
    if (/subgroup_matrix_/.test(code)) enables.push("enable chromium_experimental_subgroup_matrix;");
    return enables.join("\n") + "\n" + code;
  }

  private buildKernel(name: string, defines: Defines, entry: string): Kernel {
    const all = { ...this.baseDefines(), ...defines };
    const key = name + ":" + entry + ":" + Object.keys(all).sort().map((k) => `${k}=${all[k]}`).join(",");
    let k = this.pipelines.get(key);
    if (k) return k;
    const code = this.source(name, defines);
    const module = this.device.createShaderModule({ label: key, code });
    const pipeline = this.device.createComputePipeline({ label: key, layout: "auto", compute: { module, entryPoint: entry } });
    k = { id: this.pipelines.size + 1, key, pipeline, params: paramLayout(code) };
    this.pipelines.set(key, k);
    return k;
  }

  bufferId(b: GPUBuffer): number {
    let id = this.bufIds.get(b);
    if (id === undefined) {
      id = this.nextBufId++;
      this.bufIds.set(b, id);
    }
    return id;
  }

  /** Bind groups are cached by (pipeline, buffers, params slot); a step records the same ops each time. */
  bindGroup(k: Kernel, bindings: Binding[], slot: number): GPUBindGroup {
    let key = k.id + ":" + slot;
    for (const b of bindings) {
      if ("mapAsync" in b) key += ":" + this.bufferId(b);
      else key += ":" + this.bufferId(b.buffer) + "@" + (b.offset ?? 0) + "+" + (b.size ?? -1);
    }
    let bg = this.bindGroups.get(key);
    if (bg) return bg;
    if (this.bindGroups.size > 8192) this.bindGroups.clear();
    const entries: GPUBindGroupEntry[] = bindings.map((b, i) => ({
      binding: i,
      resource: "mapAsync" in b ? { buffer: b } : { buffer: b.buffer, offset: b.offset ?? 0, size: b.size },
    }));
    entries.push({ binding: bindings.length, resource: { buffer: this.arena, offset: slot * PARAM_SLOT, size: PARAM_WORDS * 4 } });
    bg = this.device.createBindGroup({ layout: k.pipeline.getBindGroupLayout(0), entries });
    this.bindGroups.set(key, bg);
    return bg;
  }

  /** Called by Step; grows the arena (and forgets bind groups that point at the old one). */
  reserveParams(slots: number): Uint32Array<ArrayBuffer> {
    if (slots > this.arenaSlots) {
      while (this.arenaSlots < slots) this.arenaSlots *= 2;
      this.arena.destroy();
      this.arena = this.makeArena();
      this.params = new Uint32Array((this.arenaSlots * PARAM_SLOT) / 4);
      this.bindGroups.clear();
    }
    return this.params;
  }

  uploadParams(slots: number) {
    if (slots > 0) this.device.queue.writeBuffer(this.arena, 0, this.params, 0, (slots * PARAM_SLOT) / 4);
  }

  /** Drop cached bind groups that reference a buffer about to be destroyed. */
  forgetBindGroups() {
    this.bindGroups.clear();
  }

  step(): Step {
    return new Step(this);
  }
}

/**
 * One step of GPU work: dispatches recorded into one compute pass (split only by
 * copies), their scalars gathered into one params upload, one submit.
 */
export class Step {
  private encoder: GPUCommandEncoder;
  private pass: GPUComputePassEncoder | null = null;
  private slots = 0;
  private pending: { k: Kernel; bindings: Binding[]; slot: number; wg: [number, number, number] }[] = [];

  private timedFrom: number;

  constructor(private ctx: KernelContext) {
    this.encoder = ctx.device.createCommandEncoder();
    this.timedFrom = ctx.passTimer?.used ?? 0;
  }

  /** `params`: named as the kernel's Params fields, or (older call sites) its words in order. */
  dispatch(k: Kernel, bindings: Binding[], values: ParamValues | number[], wg: [number, number?, number?]) {
    const params = Array.isArray(values) ? values : paramWords(k.params, values, k.key);
    if (this.ctx.captured) {
      this.ctx.captured.push({ k, bindings: [...bindings], params: [...params], wg: [wg[0], wg[1] ?? 1, wg[2] ?? 1] });
      return;
    }
    const slot = this.slots++;
    const words = this.ctx.reserveParams(this.slots);
    if (params.length > PARAM_WORDS) throw new Error(`too many params for ${k.key}`);
    const base = (slot * PARAM_SLOT) / 4;
    for (let i = 0; i < params.length; i++) words[base + i] = params[i];
    const max = this.ctx.gpu.limits.maxComputeWorkgroupsPerDimension;
    const [x, y = 1, z = 1] = wg;
    if (x > max || y > max || z > max) throw new Error(`dispatch ${x}x${y}x${z} exceeds ${max} for ${k.key}`);
    if (x === 0 || y === 0 || z === 0) return;
    this.pending.push({ k, bindings, slot, wg: [x, y, z] });
  }

  private flush() {
    if (!this.pending.length) return;
    // Bind groups are made after all slots are reserved, so an arena growth can't stale them.
    if (!this.pass) {
      // a pass is named by its first kernel ("embed" for a model step, "kv_rank", ...)
      const timestampWrites = this.ctx.passTimer?.next(this.pending[0].k.key.split(":")[0]);
      this.pass = this.encoder.beginComputePass(timestampWrites ? { timestampWrites } : {});
    }
    // each call crosses into native code (an N-API call under dawn.node): skip a repeated pipeline
    let last: GPUComputePipeline | null = null;
    for (const p of this.pending) {
      if (p.k.pipeline !== last) this.pass.setPipeline((last = p.k.pipeline));
      this.pass.setBindGroup(0, this.ctx.bindGroup(p.k, p.bindings, p.slot));
      this.pass.dispatchWorkgroups(p.wg[0], p.wg[1], p.wg[2]);
    }
    this.pending = [];
  }

  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, size: number) {
    if (this.ctx.captured) return; // captures hold dispatches only
    this.flush();
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
    this.encoder.copyBufferToBuffer(src, srcOffset, dst, dstOffset, size);
  }

  submit() {
    if (this.ctx.captured) return;
    this.flush();
    if (this.pass) this.pass.end();
    this.pass = null;
    this.ctx.passTimer?.resolve(this.encoder, this.timedFrom);
    this.ctx.uploadParams(this.slots);
    this.ctx.device.queue.submit([this.encoder.finish()]);
  }
}

/** Workgroup count for n items of `per` each. */
export const cdiv = (n: number, per: number) => Math.ceil(n / per);
/** The least power of two >= n (1 for n <= 1). */
export const nextPow2 = (n: number) => (n <= 1 ? 1 : 2 ** Math.ceil(Math.log2(n)));
