// Which original positions survive in each listed head: its kept keys counted by
// position into `bins` equal ranges of [0, context) (bin = pos * bins / context).
// The playground's cache map reads nHeads x bins words back however long the heads
// are; keys and values never leave the GPU. `out` is zeroed by the host first.
struct Params { BS: u32, nHeads: u32, bins: u32, context: u32, }
@group(0) @binding(0) var<storage, read> heads: array<vec2<u32>>; // (tableOffset, len) per listed head
@group(0) @binding(1) var<storage, read> blockIds: array<u32>;
@group(0) @binding(2) var<storage, read> posPool: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<atomic<u32>>; // [nHeads][bins]
@group(0) @binding(4) var<uniform> P: Params;
#include kv_slot

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let j = gid.x;
  let hi = gid.y + gid.z * nwg.y;
  if (hi >= P.nHeads) { return; }
  let hd = heads[hi];
  if (j >= hd.y) { return; }
  let pos = posPool[kvSlot(hd.x, j)];
  // a lookahead step past the end may have written a key the context no longer counts
  if (pos >= P.context) { return; }
  // pos < 2^21 and bins <= 1024: the product stays below 2^31
  atomicAdd(&out[hi * P.bins + pos * P.bins / P.context], 1u);
}
