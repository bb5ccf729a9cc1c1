// Gathers the per-slot scores and original positions of the heads listed in `heads`
// (any number of sequences at once) into one dense array for the eviction planner:
// out[hi * stride + j] = score bits, out[(nHeads + hi) * stride + j] = position. One
// array so that the host reads everything back in one map (4 + 4 bytes per key; the
// K/V data itself never leaves the GPU).
struct Params { stride: u32, BS: u32, nHeads: u32, }
@group(0) @binding(0) var<storage, read> heads: array<vec2<u32>>; // (tableOffset, len) per listed head
@group(0) @binding(1) var<storage, read> blockIds: array<u32>;
@group(0) @binding(2) var<storage, read> scores: array<f32>;
@group(0) @binding(3) var<storage, read> posPool: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<u32>;
@group(0) @binding(5) var<uniform> P: Params;
#include kv_slot

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let j = gid.x;
  let hi = gid.y + gid.z * nwg.y;
  if (hi >= P.nHeads) { return; }
  let hd = heads[hi];
  if (j >= hd.y) { return; }
  let phys = kvSlot(hd.x, j);
  out[hi * P.stride + j] = bitcast<u32>(scores[phys]);
  out[(P.nHeads + hi) * P.stride + j] = posPool[phys];
}
