// Gathers one sequence's per-slot scores and original positions, head by head, into
// dense [head][stride] arrays for the eviction planner (4 + 4 bytes per key; the
// K/V data itself never leaves the GPU).
struct Params { stride: u32, BS: u32, }
@group(0) @binding(0) var<storage, read> heads: array<vec2<u32>>; // (tableOffset, len) per head index
@group(0) @binding(1) var<storage, read> blockIds: array<u32>;
@group(0) @binding(2) var<storage, read> scores: array<f32>;
@group(0) @binding(3) var<storage, read> posPool: array<u32>;
@group(0) @binding(4) var<storage, read_write> outScore: array<f32>;
@group(0) @binding(5) var<storage, read_write> outPos: array<u32>;
@group(0) @binding(6) var<uniform> P: Params;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = gid.x;
  let hi = gid.y;
  let hd = heads[hi];
  if (j >= hd.y) { return; }
  let phys = blockIds[hd.x + j / P.BS] * P.BS + j % P.BS;
  outScore[hi * P.stride + j] = scores[phys];
  outPos[hi * P.stride + j] = posPool[phys];
}
