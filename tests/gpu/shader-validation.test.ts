// The tensor-core kernels built into pipelines on Dawn's null backend, which offers f16 and
// subgroup matrices on any machine and runs nothing: Tint's validation and Dawn's pipeline
// checks, so a WGSL error in a kernel that lavapipe cannot run shows up in CI instead of in
// a GPU call. Every variant the model and the tests dispatch: gemm_mma (each tile, with
// bias, residual, split-K), gemm_mma_skinny (each shape and row tile), the prefill
// attention (head dims 16-128, groups 1-8, queries held or reloaded, with and without
// scoring rows).
import { expect, test } from "bun:test";
import { dawnNodeGpu } from "../../src/gpu/dawn-node.ts";
import { adapterLimits, type Gpu } from "../../src/gpu/device.ts";
import { KernelContext, type Defines, type Kernel } from "../../src/gpu/kernels.ts";
import { prefillMmaBytes } from "../../src/model/attention.ts";
import { MMA_VARIANTS, mmaBytes, mmaKernel, skinnyKernel, type SkinnyShape } from "../../src/model/gemm.ts";

const SUBGROUP_MATRIX = "chromium-experimental-subgroup-matrix";

/** A Gpu on Dawn's null backend with f16 16x16x16 subgroup matrices and 32-lane subgroups, or null where dawn.node cannot load. */
async function nullGpu(): Promise<Gpu | null> {
  if (process.platform !== "linux" || process.arch !== "x64") return null;
  const gpu = dawnNodeGpu({ enabled: [], disabled: [] }, ["backend=null"]);
  const adapter = await gpu.requestAdapter();
  const want = ["shader-f16", "subgroups", SUBGROUP_MATRIX];
  if (!adapter || !want.every((f) => adapter.features.has(f))) return null;
  const limits = adapterLimits(adapter.limits);
  const device = await adapter.requestDevice({ requiredFeatures: want as GPUFeatureName[], requiredLimits: { ...limits, maxStorageBuffersPerShaderStage: adapter.limits.maxStorageBuffersPerShaderStage } });
  return {
    device, runtime: "bun", backend: "dawn.node", adapterName: "Dawn null backend", toggles: [], errors: [], limits,
    features: { f16: true, f16Weights: false, subgroups: true, subgroupMatrix: { componentType: "f16", resultType: "f32", M: 16, N: 16, K: 16 }, subgroupMaxSize: 32, timestamps: false },
  };
}

const gpu = await nullGpu();
test.skipIf(!!gpu)("tensor-core shader validation SKIPPED: dawn.node's null backend offers no f16 subgroup matrices here", () => {});

/** The (kernel, defines) pairs the builders ask for, recorded instead of built. */
class Recorder extends KernelContext {
  asked: [string, Defines][] = [];
  override kernel(name: string, defines: Defines = {}): Kernel {
    this.asked.push([name, defines]);
    return {} as Kernel;
  }
}

// the null adapter allows 16 KiB of workgroup memory and reports 128-lane subgroups; the
// kernels are sized for the 48 KiB and 32 lanes NVIDIA's Vulkan driver offers (their
// planners check the real adapter), so those two pipeline checks are not this test's
const DEVICE_LIMIT = /total use of workgroup storage \(\d+ bytes\) is larger than the maximum allowed|must be a multiple of the device maxSubgroupSize/;
const REAL_STORAGE = 49152;

/** Compiles (Tint) and builds each recorded kernel; the failures name the kernel and Dawn's message. */
async function validate(g: Gpu, rec: Recorder) {
  const bad: string[] = [];
  for (const [name, defines] of rec.asked) {
    const label = `${name} ${Object.entries(defines).map(([k, v]) => `${k}=${v}`).join(",")}`;
    g.device.pushErrorScope("validation");
    const module = g.device.createShaderModule({ code: rec.source(name, defines) });
    const errors = (await module.getCompilationInfo()).messages.filter((m) => m.type === "error").map((m) => `${m.lineNum}:${m.linePos} ${m.message}`);
    g.device.createComputePipeline({ layout: "auto", compute: { module, entryPoint: "main" } });
    const err = await g.device.popErrorScope();
    if (errors.length) bad.push(`${label}: ${errors.slice(0, 3).join("; ")}`);
    else if (err && !DEVICE_LIMIT.test(err.message)) bad.push(`${label}: ${err.message.slice(0, 300)}`);
  }
  expect(bad).toEqual([]);
}

test.skipIf(!gpu)("gemm_mma: every tile, with bias, residual and split-K, builds", async () => {
  const g = gpu!;
  const rec = new Recorder(g);
  for (const v of MMA_VARIANTS.filter((v) => mmaBytes(v) <= REAL_STORAGE)) {
    for (const [bias, res, split] of [[false, false, false], [true, true, false], [false, false, true]]) mmaKernel(rec, v, 32, bias, res, split);
  }
  expect(rec.asked.length).toBeGreaterThan(10);
  await validate(g, rec);
});

test.skipIf(!gpu)("gemm_mma_skinny: every shape and row tile builds", async () => {
  const g = gpu!;
  const rec = new Recorder(g);
  const shapes: SkinnyShape[] = [{ NB: 1, KU: 4 }, { NB: 1, KU: 8 }, { NB: 2, KU: 4 }, { NB: 2, KU: 8 }];
  for (const shape of shapes) {
    for (const M of [1, 20, 32, 64]) {
      skinnyKernel(rec, M, 32, true, true, false, shape);
      skinnyKernel(rec, M, 32, false, false, true, shape);
    }
  }
  await validate(g, rec);
});

test.skipIf(!gpu)("attention_prefill_mma: head dims 16-128, groups 1-8, both query modes, with and without scoring rows, builds", async () => {
  const g = gpu!;
  const rec = new Recorder(g);
  for (const D of [16, 32, 64, 128]) {
    for (const G of [1, 2, 3, 4, 8]) {
      for (const QSMEM of [false, true]) {
        for (const NSG of [4, 2]) {
          const t = { NSG, QSMEM, WG: NSG * 32, G, D, BQ: Math.floor((NSG * 16) / G) };
          if (t.BQ < 1 || prefillMmaBytes(t) > REAL_STORAGE) continue;
          for (const SCORES of [false, true]) rec.kernel("attention_prefill_mma", { ...t, SCORES });
        }
      }
    }
  }
  expect(rec.asked.length).toBeGreaterThan(30);
  await validate(g, rec);
});
