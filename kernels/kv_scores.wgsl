// KV-Compress eviction metric: each key's score grows by the squared softmax
// attention it received from the scoring queries of its sequence, summed over the
// query heads of its GQA group: score[key] += sum_{q, g} exp(2 (s_qgj - lse_qg)).
// One thread per key sums all of its sequence's scoring queries, so no two threads
// write the same score. A scoring query (slot) of relative index i sees the head's
// first lenBefore + i + 1 keys.
struct Params { layer: u32, H: u32, KVH: u32, L: u32, BS: u32, sStride: u32, }
@group(0) @binding(0) var<storage, read> sraw: array<f32>;        // [slot][qh][sStride]
@group(0) @binding(1) var<storage, read> lse: array<f32>;         // [slot][qh]
@group(0) @binding(2) var<storage, read> seqs: array<vec4<u32>>;  // (batch seq, first slot, slot count, i of first slot)
@group(0) @binding(3) var<storage, read> heads: array<vec2<u32>>; // (tableOffset, lenBefore)
@group(0) @binding(4) var<storage, read> blockIds: array<u32>;
@group(0) @binding(5) var<storage, read_write> scores: array<f32>;
@group(0) @binding(6) var<uniform> P: Params;
#include kv_slot

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let h = wid.x;
  let sq = seqs[wid.y];
  let j = wid.z * 64u + t;
  let hd = heads[(sq.x * P.L + P.layer) * P.KVH + h];
  if (j >= hd.y + sq.w + sq.z) { return; }
  let G = P.H / P.KVH;
  var acc = 0.0;
  for (var q = 0u; q < sq.z; q++) {
    if (j >= hd.y + sq.w + q + 1u) { continue; }
    let slot = sq.y + q;
    for (var g = 0u; g < G; g++) {
      let qh = h * G + g;
      let e = exp(sraw[(slot * P.H + qh) * P.sStride + j] - lse[slot * P.H + qh]);
      acc += e * e;
    }
  }
  let phys = kvSlot(hd.x, j);
  scores[phys] += acc;
}
