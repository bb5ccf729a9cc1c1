// Constrained decoding: a grammar's forbidden tokens get the logit MASKED before
// sampling (sample.wgsl and logprobs.wgsl treat it as excluded). `masks` holds one
// bitmask of W = ceil(V / 32) words per constrained row (bit i % 32 of word i / 32 set:
// token i allowed), `rows` the batch row each mask applies to. Grid: (ceil(V / 256), rows).
struct Params { V: u32, W: u32, }
@group(0) @binding(0) var<storage, read_write> logits: array<f32>;
@group(0) @binding(1) var<storage, read> masks: array<u32>;
@group(0) @binding(2) var<storage, read> rows: array<u32>;
@group(0) @binding(3) var<uniform> P: Params;

const MASKED = -3.0e38;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let i = gid.x;
  if (i >= P.V) { return; }
  let m = wid.y;
  if (((masks[m * P.W + i / 32u] >> (i % 32u)) & 1u) == 0u) {
    logits[rows[m] * P.V + i] = MASKED;
  }
}
