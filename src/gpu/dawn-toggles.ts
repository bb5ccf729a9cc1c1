// Dawn device toggles for Bun. dawn.node takes them as instance flags (src/gpu/dawn-node.ts);
// for bun-webgpu, a WGPUDawnTogglesDescriptor is packed by hand here, since it packs a
// device descriptor's nextInChain as a raw pointer and has no toggles option of its own.
// Deno's wgpu has no toggles.

const DAWN_TOGGLES_STYPE = 0x0005000a; // WGPUSType_DawnTogglesDescriptor

/**
 * On by default. Tint's robustness transform clamps every buffer and array index, and
 * Dawn zero-fills each workgroup's shared memory before the kernel runs; the kernels
 * here guard their own bounds (token ids and block tables are checked on the host) and
 * write shared memory before they read it, and the tests run with both toggles on
 * lavapipe. Side by side on an H200, 1B shape (bench/results/README.md): prefill GEMMs
 * 1.14-1.21x, prefill attention 1.16x, decode attention at 8k 1.22x.
 */
export const DEFAULT_DAWN_TOGGLES = ["disable_robustness", "disable_workgroup_init"];

/**
 * The defaults, changed by KVC_DAWN_TOGGLES: "a,-b" enables a and disables b (so
 * "-disable_robustness" turns the robustness transform back on).
 */
export interface DawnToggles {
  enabled: string[];
  disabled: string[];
}

export function togglesFromEnv(): DawnToggles {
  const v: string = (globalThis as any).process?.env?.KVC_DAWN_TOGGLES ?? "";
  const names = v.split(",").map((s) => s.trim()).filter(Boolean);
  for (const n of names) {
    if (!/^-?[a-z0-9_]+$/.test(n)) throw new Error(`KVC_DAWN_TOGGLES: "${n}" is not a Dawn toggle name (snake_case, "-" to disable)`);
  }
  const disabled = names.filter((n) => n.startsWith("-")).map((n) => n.slice(1));
  const enabled = [...new Set([...DEFAULT_DAWN_TOGGLES, ...names.filter((n) => !n.startsWith("-"))])].filter((n) => !disabled.includes(n));
  return { enabled, disabled };
}

/**
 * The chained struct's address, or null when no toggle is asked for. The returned
 * `keep` holds every buffer the struct points into: it must stay reachable until the
 * device request has resolved.
 */
export async function dawnTogglesChain(t: DawnToggles): Promise<{ ptr: number; keep: unknown[] } | null> {
  if (!t.enabled.length && !t.disabled.length) return null;
  const { ptr } = await import("bun:ffi");
  const keep: unknown[] = [];
  const list = (names: string[]): number => {
    if (!names.length) return 0;
    const arr = new BigUint64Array(names.length);
    names.forEach((n, i) => {
      const s = Buffer.from(n + "\0", "utf8");
      keep.push(s);
      arr[i] = BigInt(ptr(s));
    });
    keep.push(arr);
    return ptr(arr);
  };
  // { chain: { next*, sType u32 + pad }, size_t enabledCount, char** enabled, size_t disabledCount, char** disabled }
  const desc = new BigUint64Array(6);
  desc[0] = 0n;
  desc[1] = BigInt(DAWN_TOGGLES_STYPE);
  desc[2] = BigInt(t.enabled.length);
  desc[3] = BigInt(list(t.enabled));
  desc[4] = BigInt(t.disabled.length);
  desc[5] = BigInt(list(t.disabled));
  keep.push(desc);
  return { ptr: ptr(desc), keep };
}
