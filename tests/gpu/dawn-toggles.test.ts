// Dawn device toggles (src/gpu/dawn-toggles.ts): the env syntax, and that the chained
// descriptor reaches Dawn (without the robustness transform an index past an array is not clamped).
import { afterEach, expect, test } from "bun:test";
import { createGpu, isBun } from "../../src/gpu/device.ts";
import { DEFAULT_DAWN_TOGGLES, togglesFromEnv } from "../../src/gpu/dawn-toggles.ts";

const saved = process.env.KVC_DAWN_TOGGLES;
afterEach(() => {
  if (saved === undefined) delete process.env.KVC_DAWN_TOGGLES;
  else process.env.KVC_DAWN_TOGGLES = saved;
});

test("KVC_DAWN_TOGGLES adds to the defaults, and '-name' turns one off", () => {
  delete process.env.KVC_DAWN_TOGGLES;
  expect(togglesFromEnv()).toEqual({ enabled: DEFAULT_DAWN_TOGGLES, disabled: [] });
  process.env.KVC_DAWN_TOGGLES = "skip_validation, -disable_robustness";
  expect(togglesFromEnv()).toEqual({ enabled: ["disable_workgroup_init", "skip_validation"], disabled: ["disable_robustness"] });
  process.env.KVC_DAWN_TOGGLES = "disable robustness";
  expect(() => togglesFromEnv()).toThrow(/not a Dawn toggle name/);
});

/**
 * Reads w[70] of a 64-entry workgroup array. Tint's robustness transform clamps the index
 * (w[63] = 1063); without it the read runs past w, into whatever the driver put there.
 */
async function readPastWorkgroupArray(): Promise<{ adapter: string; toggles: string[]; read: number }> {
  const g = await createGpu();
  const d = g.device;
  const module = d.createShaderModule({
    code: `@group(0) @binding(0) var<storage, read_write> a: array<u32>;
var<workgroup> w: array<u32, 64>;
var<workgroup> v: array<u32, 64>;
@compute @workgroup_size(64) fn main(@builtin(local_invocation_index) t: u32) {
  w[t] = 1000u + t; v[t] = 5000u + t; workgroupBarrier();
  if (t == 0u) { a[1] = w[a[0]]; a[2] = v[t]; }
}`,
  });
  const p = d.createComputePipeline({ layout: "auto", compute: { module, entryPoint: "main" } });
  const buf = d.createBuffer({ size: 16, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
  d.queue.writeBuffer(buf, 0, new Uint32Array([70, 0, 0, 0]));
  const rb = d.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const enc = d.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(p);
  pass.setBindGroup(0, d.createBindGroup({ layout: p.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: buf } }] }));
  pass.dispatchWorkgroups(1);
  pass.end();
  enc.copyBufferToBuffer(buf, 0, rb, 0, 16);
  d.queue.submit([enc.finish()]);
  await rb.mapAsync(GPUMapMode.READ);
  const read = new Uint32Array(rb.getMappedRange().slice(0))[1];
  rb.unmap();
  d.destroy();
  return { adapter: g.adapterName, toggles: g.toggles, read };
}

test.skipIf(!isBun)("the toggles reach the Dawn device", async () => {
  process.env.KVC_DAWN_TOGGLES = "-disable_robustness";
  const robust = await readPastWorkgroupArray();
  expect(robust.toggles).toEqual(["disable_workgroup_init", "-disable_robustness"]);
  expect(robust.read).toBe(1063);
  delete process.env.KVC_DAWN_TOGGLES;
  const fast = await readPastWorkgroupArray();
  expect(fast.toggles).toEqual(DEFAULT_DAWN_TOGGLES);
  // lavapipe lays v right after w, so the unclamped read lands in v (other drivers promise nothing)
  if (/llvmpipe/.test(fast.adapter)) expect(fast.read).toBe(5006);
});
