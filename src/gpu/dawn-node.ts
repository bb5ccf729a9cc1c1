// Dawn's own Node binding (npm `webgpu`, "dawn.node") as the WebGPU of Bun: its Dawn
// has the toggles that expose `shader-f16` and subgroup matrices (tensor cores) on
// NVIDIA, which bun-webgpu 0.1.7's Dawn lacks. Loaded as an N-API addon.
import { createRequire } from "node:module";
import type { DawnToggles } from "./dawn-toggles.ts";

/**
 * Instance toggles dawn.node needs for kvc's kernels on NVIDIA: subgroup matrices are an
 * unsafe (experimental) API, f16 is gated off on NVIDIA's Vulkan driver by default, and
 * cooperative matrices need the Vulkan memory model. dawn.node passes the same lists to
 * every device the instance makes, so the device toggles (DEFAULT_DAWN_TOGGLES) go here too.
 */
export const DAWN_NODE_TOGGLES = ["allow_unsafe_apis", "vulkan_enable_f16_on_nvidia", "use_vulkan_memory_model"];

let addonPath: (() => string) | null = null;

/** The single binary's copy of dawn.node (scripts/build.ts embeds it and writes it out). */
export function useDawnNode(path: () => string) {
  addonPath = path;
}

/**
 * GPU objects made here, held for the life of the process. The GPU object owns Dawn's
 * instance, and adapters and devices refer to it only through native pointers (each
 * pending map or work-done callback is polled by a scheduled `ProcessEvents` on it). When
 * no JS reference to the GPU object is left, JavaScriptCore collects it even while its
 * devices work, the instance is freed under them, and the next poll locks a freed mutex:
 * a "futex facility returned an unexpected error code" abort or a segfault in
 * `InstanceBase::ProcessEvents` (found under gdb; V8 collects later, so Node survives
 * short runs). Keeping it reachable is the fix.
 */
const instances: GPU[] = [];

function addon(): { create(flags: string[]): GPU; globals: Record<string, unknown> } {
  const require = createRequire(import.meta.url);
  if (addonPath) return require(addonPath());
  if (process.platform !== "linux" || process.arch !== "x64") {
    // other platforms ship their own folder in the package; load through its index
    throw new Error(`dawn.node backend: kvc loads it for linux-x64 only (this is ${process.platform}-${process.arch}); set KVC_WEBGPU=bun-webgpu`);
  }
  return require("webgpu/dist/linux-x64/dawn.node");
}

/** A new dawn.node GPU (the `navigator.gpu` object) with kvc's toggles; `flags` adds instance flags (e.g. "backend=null"). */
export function dawnNodeGpu(toggles: DawnToggles, flags: string[] = []): GPU {
  const { create, globals } = addon();
  // GPUBufferUsage, GPUMapMode, ... for code that uses the spec's globals
  for (const [k, v] of Object.entries(globals)) if (!(k in globalThis)) (globalThis as any)[k] = v;
  const enabled = [...new Set([...DAWN_NODE_TOGGLES, ...toggles.enabled])].filter((t) => !toggles.disabled.includes(t));
  const all = [...flags, `enable-dawn-features=${enabled.join(",")}`];
  if (toggles.disabled.length) all.push(`disable-dawn-features=${toggles.disabled.join(",")}`);
  const gpu = create(all);
  instances.push(gpu);
  return gpu;
}
