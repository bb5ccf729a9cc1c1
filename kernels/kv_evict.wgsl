// Eviction planning on the GPU, part 2: each workgroup evicts the `evict` lowest keys
// of one head as kv_rank sorted them and compacts the head in place: survivors past
// the new length move, in slot order, into the evicted slots before it, in slot order
// (the same moves as compactionMoves on the host), with their K, V, position and score.
// A destination is always below the new length and a source at or above it, so the
// moves run in parallel. Scratch layout as in kv_rank.wgsl. Keys appended after the
// ranking (slots len..lenNow-1: the decode round that ran meanwhile) are kept and
// compacted with the rest.
struct Params { BS: u32, nHeads: u32, half: u32, }
#include kv_plan_head
@group(0) @binding(0) var<storage, read> info: array<Head>;
@group(0) @binding(1) var<storage, read> blockIds: array<u32>;
@group(0) @binding(2) var<storage, read_write> scratch: array<u32>;
@group(0) @binding(3) var<storage, read_write> Kp: array<u32>;
@group(0) @binding(4) var<storage, read_write> Vp: array<u32>;
@group(0) @binding(5) var<storage, read_write> posPool: array<u32>;
@group(0) @binding(6) var<storage, read_write> scorePool: array<f32>;
@group(0) @binding(7) var<uniform> P: Params;

const WG = 256u;
var<workgroup> wLen: u32;
var<workgroup> wEvict: u32;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let hi = wid.x + wid.y * nwg.x;
  if (t == 0u) {
    let h = info[min(hi, P.nHeads - 1u)];
    wLen = select(0u, h.len, hi < P.nHeads);
    wEvict = select(0u, min(h.evict, h.len), hi < P.nHeads);
  }
  let n = workgroupUniformLoad(&wLen);
  let e = workgroupUniformLoad(&wEvict);
  if (hi >= P.nHeads || e == 0u) { return; }
  let hd = info[hi];
  let N2 = nextPow2(n);
  let A = hd.base;
  let order = hd.base + 2u * N2;
  let gone = hd.base + 3u * N2; // kv_rank's raw scores are no longer needed
  let now = hd.lenNow;
  let keep = now - e;

  for (var i = t; i < n; i += WG) { scratch[gone + i] = 0u; }
  storageBarrier();
  for (var j = t; j < e; j += WG) { scratch[gone + scratch[order + scratch[A + 2u * j + 1u]]] = 1u; }
  storageBarrier();

  // holes (evicted, below keep) and survivors (kept, at or above keep), each in slot
  // order, listed into the sort pairs: hole k -> A[2k], survivor k -> A[2k + 1]
  var holes = 0u;
  var movers = 0u;
  for (var base = 0u; base < now; base += WG) {
    let i = base + t;
    var flag = 0u;
    if (i < now) {
      let g = i < n && scratch[gone + i] == 1u;
      if (i < keep && g) { flag = 1u; }
      if (i >= keep && !g) { flag = 1u << 16u; }
    }
    // inclusive scan of (hole, survivor) counts packed in one word (a tile counts <= 256)
    let before = workgroupScan(t, flag) - flag;
    if ((flag & 0xffffu) != 0u) { scratch[A + 2u * (holes + (before & 0xffffu))] = i; }
    if ((flag >> 16u) != 0u) { scratch[A + 2u * (movers + (before >> 16u)) + 1u] = i; }
    let total = scan[WG - 1u];
    holes += total & 0xffffu;
    movers += total >> 16u;
    workgroupBarrier();
  }
  storageBarrier();

  let words = holes * P.half;
  for (var w = t; w < words; w += WG) {
    let k = w / P.half;
    let p = w % P.half;
    let dst = kvSlot(hd.tableOffset, scratch[A + 2u * k]);
    let src = kvSlot(hd.tableOffset, scratch[A + 2u * k + 1u]);
    Kp[dst * P.half + p] = Kp[src * P.half + p];
    Vp[dst * P.half + p] = Vp[src * P.half + p];
    if (p == 0u) {
      posPool[dst] = posPool[src];
      scorePool[dst] = scorePool[src];
    }
  }
}
