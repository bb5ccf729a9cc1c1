// Eviction planning on the GPU, part 1: ranks every key of one (sequence, layer, KV
// head) per workgroup, so the host reads back chunk sums instead of every score.
//   1. sort the head's slots by original position (bitonic, in workgroup memory or `scratch`);
//   2. max-pool each key's score over its POOL neighbours in position order;
//   3. sort the keys by (pooled score bits, position rank): lowest first, older first on
//      ties; keys in the protected window (position >= protectFrom) sort last;
//   4. write the number of evictable keys and the sum of each `chunk` consecutive
//      evictable keys' pooled scores (the host turns sums into chunk means).
// The sorted order stays in `scratch` for kv_evict, which evicts a prefix of it.
// Scratch per head at `base` (u32 words, N2 = next power of two >= len):
//   [0, 2 N2) sort pairs (key, rank) · [2 N2, 3 N2) slot of each position rank · [3 N2, 4 N2) raw scores by rank
// Pooled scores are sums of squares (>= 0), so their f32 bit patterns sort as they do.
struct Params { BS: u32, nHeads: u32, }
#include kv_plan_head
@group(0) @binding(0) var<storage, read> info: array<Head>;
@group(0) @binding(1) var<storage, read> blockIds: array<u32>;
@group(0) @binding(2) var<storage, read> scores: array<f32>;
@group(0) @binding(3) var<storage, read> posPool: array<u32>;
@group(0) @binding(4) var<storage, read_write> scratch: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<u32>; // [nHeads] evictable counts, then chunk sums at outBase
@group(0) @binding(6) var<uniform> P: Params;

const WG = 256u;
const LAST = 0xffffffffu;
var<workgroup> wLen: u32;
var<workgroup> wProtected: atomic<u32>;

fn less(a: vec2<u32>, b: vec2<u32>) -> bool {
  return a.x < b.x || (a.x == b.x && a.y < b.y);
}
fn pairAt(base: u32, i: u32) -> vec2<u32> {
  return vec2<u32>(scratch[base + 2u * i], scratch[base + 2u * i + 1u]);
}
fn setPair(base: u32, i: u32, v: vec2<u32>) {
  scratch[base + 2u * i] = v.x;
  scratch[base + 2u * i + 1u] = v.y;
}

// A head of up to SORT_PAIRS keys sorts in workgroup memory (one read and one write
// of scratch instead of one per bitonic pass); a longer one sorts in scratch.
const SORT_PAIRS = {{SORT_PAIRS}}u;
var<workgroup> sp: array<vec2<u32>, SORT_PAIRS>;

// pair i of a sort in workgroup memory (local) or in scratch at `base`
fn getPair(base: u32, i: u32, local: bool) -> vec2<u32> {
  if (local) { return sp[i]; }
  return pairAt(base, i);
}
fn putPair(base: u32, i: u32, v: vec2<u32>, local: bool) {
  if (local) { sp[i] = v; } else { setPair(base, i, v); }
}

// Ascending bitonic sort of the N2 pairs at `base`; N2 is workgroup-uniform.
fn sortPairs(base: u32, N2: u32, t: u32) {
  let local = N2 <= SORT_PAIRS;
  if (local) {
    for (var i = t; i < N2; i += WG) { sp[i] = pairAt(base, i); }
    workgroupBarrier();
  }
  for (var k = 2u; k <= N2; k <<= 1u) {
    for (var j = k >> 1u; j > 0u; j >>= 1u) {
      for (var i = t; i < N2; i += WG) {
        let l = i ^ j;
        if (l > i) {
          let a = getPair(base, i, local);
          let b = getPair(base, l, local);
          if (less(b, a) == ((i & k) == 0u)) {
            putPair(base, i, b, local);
            putPair(base, l, a, local);
          }
        }
      }
      if (local) { workgroupBarrier(); } else { storageBarrier(); }
    }
  }
  if (local) {
    for (var i = t; i < N2; i += WG) { setPair(base, i, sp[i]); }
    storageBarrier();
  }
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let hi = wid.x + wid.y * nwg.x;
  if (t == 0u) {
    wLen = select(0u, info[min(hi, P.nHeads - 1u)].len, hi < P.nHeads);
    atomicStore(&wProtected, 0u);
  }
  let n = workgroupUniformLoad(&wLen);
  if (hi >= P.nHeads) { return; }
  let hd = info[hi];
  let N2 = nextPow2(n);
  let A = hd.base;
  let order = hd.base + 2u * N2;
  let raw = hd.base + 3u * N2;

  // 1. (position, slot) pairs sorted by position
  for (var i = t; i < N2; i += WG) {
    var v = vec2<u32>(LAST, LAST);
    if (i < n) {
      v = vec2<u32>(posPool[phys(hd, i)], i);
    }
    setPair(A, i, v);
  }
  storageBarrier();
  sortPairs(A, N2, t);
  for (var r = t; r < n; r += WG) {
    let slot = scratch[A + 2u * r + 1u];
    scratch[order + r] = slot;
    scratch[raw + r] = bitcast<u32>(scores[phys(hd, slot)]);
  }
  storageBarrier();

  // 2-3. (pooled score bits, rank) for evictable keys, LAST for protected ones
  for (var r = t; r < N2; r += WG) {
    var v = vec2<u32>(LAST, LAST);
    if (r < n) {
      let pos = scratch[A + 2u * r];
      if (pos >= hd.protectFrom) {
        atomicAdd(&wProtected, 1u);
      } else {
        var m = 0.0;
        let lo = select(0u, r - hd.radius, r >= hd.radius);
        let hiR = min(n - 1u, r + hd.radius);
        for (var j = lo; j <= hiR; j++) { m = max(m, bitcast<f32>(scratch[raw + j])); }
        v = vec2<u32>(bitcast<u32>(m), r);
      }
    }
    // every thread read its own pair's position above before overwriting it
    setPair(A, r, v);
  }
  storageBarrier();
  sortPairs(A, N2, t);

  // 4. evictable count and chunk sums
  workgroupBarrier();
  let nc = n - atomicLoad(&wProtected);
  if (t == 0u) { out[hi] = nc; }
  let chunks = (nc + hd.chunk - 1u) / hd.chunk;
  for (var c = t; c < chunks; c += WG) {
    var s = 0.0;
    let end = min(nc, (c + 1u) * hd.chunk);
    for (var j = c * hd.chunk; j < end; j++) { s += bitcast<f32>(scratch[A + 2u * j]); }
    out[hd.outBase + c] = bitcast<u32>(s);
  }
}
