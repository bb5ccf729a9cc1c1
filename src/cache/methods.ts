// The compression methods: what each one runs. The engine looks a method up here
// instead of switching on its name, so a new method is one entry.
import type { CompressionMethod, CompressionOptions } from "./compression.ts";
import { kvCompressPolicy, kvCrushPolicy, snapKvPolicy, streamingPolicy, type CompressionPolicy } from "./policies.ts";

export interface Method {
  /** the host policy that plans it; null: nothing is evicted */
  policy: (o: CompressionOptions) => CompressionPolicy | null;
  /** whether the GPU planner (src/cache/gpu-planner.ts) can plan it instead of the host */
  gpuPlanned: boolean;
}

export const METHODS: Record<CompressionMethod, Method> = {
  none: { policy: () => null, gpuPlanned: false },
  kvcompress: { policy: () => kvCompressPolicy, gpuPlanned: true },
  snapkv: { policy: () => snapKvPolicy, gpuPlanned: true },
  streaming: { policy: () => streamingPolicy, gpuPlanned: false },
  kvcrush: { policy: (o) => kvCrushPolicy(o.crushBase === "snapkv" ? snapKvPolicy : kvCompressPolicy), gpuPlanned: false },
};

/** The policy a request's options name. */
export function policyFor(o: CompressionOptions): CompressionPolicy | null {
  return METHODS[o.method].policy(o);
}
