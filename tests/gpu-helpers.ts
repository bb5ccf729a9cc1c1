// Kernel test harness: one device for the process, kernel contexts per variant.
import { createGpu, checkGpuErrors, type Gpu, type GpuFeatures } from "../src/gpu/device.ts";
import { KernelContext } from "../src/gpu/kernels.ts";
import { readBuffer, uploadStorage, createStorage } from "../src/gpu/buffers.ts";

let gpuP: Promise<Gpu> | null = null;
export const getGpu = () => (gpuP ??= createGpu());

/** Kernel variants this adapter can run: packed-u32 always, native f16 and subgroups where offered. */
export async function variants(): Promise<{ name: string; kc: KernelContext }[]> {
  const gpu = await getGpu();
  const out: { name: string; kc: KernelContext }[] = [];
  const mk = (f: Partial<GpuFeatures>, name: string) => out.push({ name, kc: new KernelContext({ ...gpu, features: { ...gpu.features, ...f } }) });
  mk({ f16: false, subgroups: false }, "u32");
  if (gpu.features.f16) mk({ f16: true, subgroups: false }, "f16");
  if (gpu.features.subgroups) mk({ f16: false, subgroups: true }, "u32+subgroups");
  return out;
}

export async function up(data: ArrayBufferView, label = "test"): Promise<GPUBuffer> {
  return uploadStorage((await getGpu()).device, data, label);
}
export async function zeros(bytes: number): Promise<GPUBuffer> {
  return createStorage((await getGpu()).device, bytes, "zeros");
}
export async function readF32(b: GPUBuffer, n: number, offset = 0): Promise<Float32Array> {
  const g = await getGpu();
  const out = new Float32Array(await readBuffer(g.device, b, offset * 4, n * 4));
  checkGpuErrors(g);
  return out;
}
export async function readU32(b: GPUBuffer, n: number): Promise<Uint32Array> {
  const g = await getGpu();
  const out = new Uint32Array(await readBuffer(g.device, b, 0, n * 4));
  checkGpuErrors(g);
  return out;
}

/** Deterministic pseudo-random numbers in [-a, a). */
export function rand(n: number, seed: number, a = 1): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    out[i] = ((s / 2 ** 32) * 2 - 1) * a;
  }
  return out;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}
