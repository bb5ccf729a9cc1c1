// Adapter and device acquisition for both runtimes: Bun (Dawn, through dawn.node or
// bun-webgpu) and Deno (built-in wgpu). Feature detection picks kernel variants.
import { dawnNodeGpu } from "./dawn-node.ts";
import { dawnTogglesChain, togglesFromEnv } from "./dawn-toggles.ts";

/** A subgroup-matrix shape the adapter offers (GPUAdapterInfo.subgroupMatrixConfigs). */
export interface SubgroupMatrixConfig {
  componentType: string;
  resultType: string;
  M: number;
  N: number;
  K: number;
}

/** Where WebGPU comes from: Dawn's Node binding or bun-webgpu under Bun, wgpu under Deno. */
export type GpuBackend = "dawn.node" | "bun-webgpu" | "wgpu";

export const BACKEND_NAMES: Record<GpuBackend, string> = {
  "dawn.node": "Dawn (dawn.node)",
  "bun-webgpu": "Dawn (bun-webgpu)",
  wgpu: "wgpu (Deno)",
};

export interface GpuFeatures {
  /** `shader-f16`: f16 in WGSL (the tensor-core kernels need it) */
  f16: boolean;
  /**
   * weights read as native f16 by the matmul and embedding kernels (their F16 define);
   * otherwise as packed u32 + unpack2x16float. Off on NVIDIA, where the packed loads ran
   * faster (H100, dawn.node, single-stream decode: 1B 545 against 490 tokens/s, 8B 152.6
   * against 148.0); KVC_F16_WEIGHTS=0/1 chooses.
   */
  f16Weights: boolean;
  /** subgroupAdd etc.; Dawn exposes it, wgpu/naga does not */
  subgroups: boolean;
  /**
   * f16 x f16 -> f32 subgroup matrices (tensor cores; Dawn's chromium-experimental-subgroup-matrix),
   * the 16x16x16 shape where offered, else null
   */
  subgroupMatrix: SubgroupMatrixConfig | null;
  /** lanes of a subgroup at most (a subgroup-matrix kernel's workgroup is a multiple of it) */
  subgroupMaxSize: number;
  timestamps: boolean;
}

export interface Gpu {
  device: GPUDevice;
  runtime: "bun" | "deno";
  backend: GpuBackend;
  adapterName: string;
  features: GpuFeatures;
  /** Dawn toggles asked for (KVC_DAWN_TOGGLES; "-name" disabled) */
  toggles: string[];
  /** uncaptured device errors since the last check */
  errors: string[];
  limits: {
    maxBufferSize: number;
    maxStorageBufferBindingSize: number;
    maxComputeWorkgroupStorageSize: number;
    maxComputeInvocationsPerWorkgroup: number;
    maxComputeWorkgroupsPerDimension: number;
  };
}

export const isBun = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined";

/** Env override for a boolean feature: "0"/"1" forces it, anything else means auto. */
function override(name: string, available: boolean): boolean {
  const v = (globalThis as any).process?.env?.[name] ?? (globalThis as any).Deno?.env?.get(name);
  if (v === "0") return false;
  if (v === "1" && !available) throw new Error(`${name}=1 but the adapter does not offer this feature`);
  return available;
}

let bunGlobalsReady = false;
let dawnLibrary: (() => string) | null = null;
const SUBGROUP_MATRIX = "chromium-experimental-subgroup-matrix";

/**
 * The single binary's Dawn library (scripts/build.ts embeds it): a function that
 * writes it out to a real file and returns its path, for bun-webgpu to dlopen.
 */
export function useDawnLibrary(path: () => string) {
  dawnLibrary = path;
}

function env(name: string): string | undefined {
  return (globalThis as any).process?.env?.[name] ?? (globalThis as any).Deno?.env?.get(name);
}

/**
 * The backend KVC_WEBGPU names. Bun: "dawn.node" (the default: only its Dawn offers f16
 * and subgroup matrices on NVIDIA) or "bun-webgpu". Deno: "wgpu" (built in, the default)
 * or "dawn.node" (the same addon, loaded through Deno's N-API).
 */
export function backendFromEnv(): GpuBackend {
  const v = env("KVC_WEBGPU") || (isBun ? "dawn.node" : "wgpu");
  const allowed: GpuBackend[] = isBun ? ["dawn.node", "bun-webgpu"] : ["wgpu", "dawn.node"];
  if ((allowed as string[]).includes(v)) return v as GpuBackend;
  throw new Error(`KVC_WEBGPU="${v}": expected ${allowed.map((a) => `"${a}"`).join(" or ")} under ${isBun ? "Bun" : "Deno"}`);
}

/** The `navigator.gpu` object of the backend KVC_WEBGPU picks (tests ask it for a default-limits device). */
export function webgpu(): Promise<GPU> {
  const backend = backendFromEnv();
  return navigatorGpu(backend, backend !== "wgpu" ? togglesFromEnv() : { enabled: [], disabled: [] });
}

async function navigatorGpu(backend: GpuBackend, toggles: ReturnType<typeof togglesFromEnv>): Promise<GPU> {
  if (backend === "dawn.node") return dawnNodeGpu(toggles);
  if (backend === "bun-webgpu" && !bunGlobalsReady) {
    const m = await import("bun-webgpu");
    m.setupGlobals(dawnLibrary ? { libPath: dawnLibrary() } : undefined);
    bunGlobalsReady = true;
  }
  const gpu = (globalThis as any).navigator?.gpu as GPU | undefined;
  if (!gpu) throw new Error("WebGPU is not available in this runtime (Deno needs --unstable-webgpu or Deno >= 2.x)");
  return gpu;
}

/** The f16 -> f32 subgroup-matrix shape kernels use: 16x16x16 where offered (NVIDIA), else the first f16 one. */
function pickSubgroupMatrix(info: GPUAdapterInfo): SubgroupMatrixConfig | null {
  const configs = ((info as any).subgroupMatrixConfigs ?? []) as any[];
  // dawn.node 0.6.2 names the result type `resultComponentType` and reads it back as
  // undefined: a config whose result type is unknown is taken as f32 (NVIDIA lists its
  // f16 shapes twice, f16 and f32 results), and a kernel that needs f32 fails to build if not
  const result = (c: any): string => c.resultComponentType ?? c.resultType ?? "f32";
  const f16 = configs.filter((c) => c.componentType === "f16" && result(c) === "f32");
  const c = f16.find((c) => c.M === 16 && c.N === 16 && c.K === 16) ?? f16[0];
  return c ? { componentType: c.componentType, resultType: result(c), M: c.M, N: c.N, K: c.K } : null;
}

/** The limits kvc sizes its work by, as the adapter offers them (the device asks for these). */
export function adapterLimits(L: GPUSupportedLimits): Gpu["limits"] {
  return {
    maxBufferSize: L.maxBufferSize,
    maxStorageBufferBindingSize: L.maxStorageBufferBindingSize,
    maxComputeWorkgroupStorageSize: L.maxComputeWorkgroupStorageSize,
    maxComputeInvocationsPerWorkgroup: L.maxComputeInvocationsPerWorkgroup,
    maxComputeWorkgroupsPerDimension: L.maxComputeWorkgroupsPerDimension,
  };
}

export async function createGpu(): Promise<Gpu> {
  const backend = backendFromEnv();
  const toggles = backend !== "wgpu" ? togglesFromEnv() : { enabled: [], disabled: [] };
  const gpu = await navigatorGpu(backend, toggles);
  const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) throw new Error("no WebGPU adapter found (is a Vulkan driver installed? lavapipe: mesa-vulkan-drivers >= 25)");
  const info = adapter.info as GPUAdapterInfo & { device?: string; description?: string };
  const adapterName = [info.vendor, info.description || info.device || info.architecture].filter(Boolean).join(" ");
  const has = (f: string) => adapter.features.has(f);
  const f16 = override("KVC_F16", has("shader-f16"));
  const subgroups = override("KVC_SUBGROUPS", has("subgroups"));
  const matrix = f16 && subgroups && has(SUBGROUP_MATRIX) ? pickSubgroupMatrix(info) : null;
  const features: GpuFeatures = {
    f16,
    f16Weights: f16 && override("KVC_F16_WEIGHTS", !/nvidia/i.test(adapterName)),
    subgroups,
    subgroupMatrix: override("KVC_SUBGROUP_MATRIX", !!matrix) ? matrix : null,
    subgroupMaxSize: (info as any).subgroupMaxSize ?? 0,
    timestamps: has("timestamp-query"),
  };
  const L = adapter.limits;
  const limits = adapterLimits(L);
  const requiredLimits: Record<string, number> = {
    ...limits,
    maxComputeWorkgroupSizeX: L.maxComputeWorkgroupSizeX,
    maxStorageBuffersPerShaderStage: L.maxStorageBuffersPerShaderStage,
  };
  // bun-webgpu 0.1.7 rejects any requiredLimits unless these four are present as 0.
  if (backend === "bun-webgpu") {
    Object.assign(requiredLimits, {
      maxStorageBuffersInFragmentStage: 0,
      maxStorageBuffersInVertexStage: 0,
      maxStorageTexturesInFragmentStage: 0,
      maxStorageTexturesInVertexStage: 0,
    });
  }
  const requiredFeatures: GPUFeatureName[] = [];
  if (features.f16) requiredFeatures.push("shader-f16");
  if (features.subgroups) requiredFeatures.push("subgroups" as GPUFeatureName);
  if (features.subgroupMatrix) requiredFeatures.push(SUBGROUP_MATRIX as GPUFeatureName);
  if (features.timestamps) requiredFeatures.push("timestamp-query");
  // dawn.node took the toggles as instance flags; Deno has none
  const chain = backend === "bun-webgpu" ? await dawnTogglesChain(toggles) : null;
  const desc: GPUDeviceDescriptor & { nextInChain?: number } = { requiredLimits, requiredFeatures };
  if (chain) desc.nextInChain = chain.ptr;
  const device = await requestDevice(gpu, adapter, desc);
  chain?.keep.length; // the toggle strings stay alive until the device exists
  const toggleNames = [...toggles.enabled, ...toggles.disabled.map((n) => "-" + n)];
  const g: Gpu = { device, runtime: isBun ? "bun" : "deno", backend, adapterName, features, limits, errors: [], toggles: toggleNames };
  // Validation errors (a bad shader, a bad binding) are kept and raised at the next
  // readback, so a broken step fails loudly instead of returning stale numbers.
  device.addEventListener?.("uncapturederror", (e: any) => {
    g.errors.push(String(e.error?.message ?? e));
  });
  return g;
}

/**
 * bun-webgpu 0.1.7 now and then hands Dawn a garbage feature name ("Value 1269 is
 * invalid for WGPUFeatureName": the packed feature list read after it was collected);
 * the same request succeeds when made again, so such a refusal is retried (as is a
 * request that resolves to no device at all, on a fresh adapter).
 */
async function requestDevice(gpu: GPU, adapter: GPUAdapter, desc: GPUDeviceDescriptor): Promise<GPUDevice> {
  for (let attempt = 1; ; attempt++) {
    try {
      const device = await adapter.requestDevice(desc);
      if (device) return device;
      // it also resolves to null now and then; an adapter hands out one device, so ask a fresh one
      if (attempt >= 4) throw new Error("the WebGPU adapter returned no device (4 attempts)");
      adapter = (await gpu.requestAdapter({ powerPreference: "high-performance" })) ?? adapter;
    } catch (e) {
      if (attempt >= 4 || !/is invalid for WGPUFeatureName/.test(String((e as Error)?.message ?? e))) throw e;
    }
  }
}

export function describeGpu(g: Gpu): string {
  const f = g.features;
  const sm = f.subgroupMatrix;
  return `${g.adapterName} via ${BACKEND_NAMES[g.backend]}; ` +
    `f16=${f.f16 ? (f.f16Weights ? "native" : "on, weights packed-u32") : "packed-u32"} subgroups=${f.subgroups ? "on" : "off"} ` +
    `subgroup-matrix=${sm ? `${sm.componentType}->${sm.resultType} ${sm.M}x${sm.N}x${sm.K}` : "off"}; ` +
    `max binding ${(g.limits.maxStorageBufferBindingSize / 2 ** 20).toFixed(0)} MiB` +
    (g.toggles.length ? `; toggles ${g.toggles.join(",")}` : "");
}

/** Throws the first device error recorded since the last check. */
export function checkGpuErrors(g: Gpu) {
  if (!g.errors.length) return;
  const first = g.errors[0];
  const n = g.errors.length;
  g.errors.length = 0;
  throw new Error(`WebGPU error${n > 1 ? ` (and ${n - 1} more)` : ""}: ${first}`);
}
