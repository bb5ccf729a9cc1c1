// navigator.gpu for onnxruntime-web under Bun. onnxruntime-web's WebGPU backend
// requests its own adapter and device from navigator.gpu; two bindings can serve it:
//   bun-webgpu  kvc's other Bun backend (KVC_WEBGPU=bun-webgpu). Two shims make it work:
//               - its requestDevice rejects any requiredLimits unless the four
//                 vertex/fragment storage limits are also given (as 0), and onnxruntime
//                 asks for limits;
//               - its queue.writeBuffer refuses views of a SharedArrayBuffer, and the
//                 threaded wasm build's memory is one, so such writes go through a copy.
//               On NVIDIA its Dawn exposes no shader-f16, so f16 graphs cannot run there.
//   dawn-node   Dawn's own Node binding (npm `webgpu`), kvc's default under Bun, made
//               by src/gpu/dawn-node.ts with its instance toggles (f16 on NVIDIA) and none
//               of kvc's device toggles: onnxruntime runs with Dawn's robustness, as in
//               a browser.
import { dawnNodeGpu } from "../../src/gpu/dawn-node.ts";

export type GpuBinding = "bun-webgpu" | "dawn-node";

export interface OrtGpu {
  binding: GpuBinding;
  adapterName: string;
  shaderF16: boolean;
}

const ZERO_LIMITS = {
  maxStorageBuffersInFragmentStage: 0,
  maxStorageBuffersInVertexStage: 0,
  maxStorageTexturesInFragmentStage: 0,
  maxStorageTexturesInVertexStage: 0,
};

/** queue.writeBuffer that copies views of a SharedArrayBuffer into a plain buffer first. */
function copySharedWrites(device: GPUDevice) {
  const q = device.queue as unknown as { writeBuffer: (...a: any[]) => void };
  const write = q.writeBuffer.bind(q);
  q.writeBuffer = (buffer: GPUBuffer, offset: number, data: any, dataOffset?: number, size?: number) => {
    if (!ArrayBuffer.isView(data) || data.buffer instanceof ArrayBuffer) return write(buffer, offset, data, dataOffset, size);
    const bpe = (data as { BYTES_PER_ELEMENT?: number }).BYTES_PER_ELEMENT ?? 1;
    const start = data.byteOffset + (dataOffset ?? 0) * bpe;
    const len = size !== undefined ? size * bpe : data.byteLength - (dataOffset ?? 0) * bpe;
    write(buffer, offset, new Uint8Array(data.buffer, start, len).slice());
  };
}

/**
 * Wraps navigator.gpu so every device it hands out carries the shims above. `hideF16`
 * takes shader-f16 off the adapter: a CPU Vulkan then behaves as bun-webgpu on NVIDIA.
 */
function shimDevices(gpu: GPU, addZeroLimits: boolean, hideF16: boolean) {
  const requestAdapter = gpu.requestAdapter.bind(gpu);
  gpu.requestAdapter = async (opts?: GPURequestAdapterOptions) => {
    const adapter = await requestAdapter(opts);
    if (!adapter) return adapter;
    if (hideF16) {
      const features = new Set([...adapter.features].filter((f) => f !== "shader-f16"));
      Object.defineProperty(adapter, "features", { value: features });
    }
    const requestDevice = adapter.requestDevice.bind(adapter);
    adapter.requestDevice = async (d: GPUDeviceDescriptor = {}) => {
      const limits = addZeroLimits ? { ...(d.requiredLimits ?? {}), ...ZERO_LIMITS } : d.requiredLimits;
      const requiredFeatures = hideF16 ? [...(d.requiredFeatures ?? [])].filter((f) => f !== "shader-f16") : d.requiredFeatures;
      const device = await requestDevice({ ...d, requiredLimits: limits, requiredFeatures });
      copySharedWrites(device);
      return device;
    };
    return adapter;
  };
}

/** Installs navigator.gpu from `binding` and describes the adapter onnxruntime will get. */
export async function installGpu(binding: GpuBinding, hideF16 = false): Promise<OrtGpu> {
  if (binding === "bun-webgpu") (await import("bun-webgpu")).setupGlobals();
  else (globalThis as any).navigator.gpu = dawnNodeGpu({ enabled: [], disabled: [] });
  const gpu = (globalThis as any).navigator?.gpu as GPU | undefined;
  if (!gpu) throw new Error(`${binding}: no navigator.gpu`);
  shimDevices(gpu, binding === "bun-webgpu", hideF16);
  const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) throw new Error(`${binding}: no WebGPU adapter (is a Vulkan driver installed?)`);
  const info = adapter.info as GPUAdapterInfo & { description?: string; device?: string };
  return {
    binding,
    adapterName: [info.vendor, info.description || info.device || info.architecture].filter(Boolean).join(" "),
    shaderF16: adapter.features.has("shader-f16"),
  };
}
