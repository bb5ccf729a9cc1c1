// Eviction planning on the GPU, part 1: ranks every key of one (sequence, layer, KV
// head) per workgroup, so the host reads back chunk sums instead of every score.
//   1. rank the head's slots by original position: a bitmap of the positions in
//      workgroup memory and prefix popcounts (positions are distinct and below
//      32 POS_WORDS); otherwise (a duplicate or a later position) a bitonic sort in scratch;
//   2. max-pool each key's score over its POOL neighbours in position order;
//   3. sort the keys by (pooled score bits, position rank): lowest first, older first on
//      ties; keys in the protected window (position >= protectFrom) sort last;
//   4. write the number of evictable keys and the sum of each `chunk` consecutive
//      evictable keys' pooled scores (the host turns sums into chunk means).
// A head of up to SORT_PAIRS keys runs 1-3 in registers and workgroup memory: scratch
// then gets only the slot of each rank and the sorted order's ranks (what kv_evict
// reads); a longer head runs them through scratch, which the evict pass reuses.
// The sorted order stays in `scratch` for kv_evict, which evicts a prefix of it.
// Scratch per head at `base` (u32 words, N2 = next power of two >= len):
//   [0, 2 N2) sort pairs (key, rank) · [2 N2, 3 N2) slot of each position rank · [3 N2, 4 N2) raw scores by rank
// Pooled scores are sums of squares (>= 0), so their f32 bit patterns sort as they do.
// A dispatch ranks the heads whose sort length NS (below) lies in (minNS, maxNS]: the
// planner sends heads longer than SORT_PAIRS to a second pipeline with small workgroup
// arrays, since they sort in scratch either way and more workgroups fit an SM.
struct Params { BS: u32, nHeads: u32, minNS: u32, maxNS: u32, }
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
var<workgroup> wBad: atomic<u32>;
var<workgroup> wBadOnce: u32;

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

// Ascending bitonic sort of the N2 pairs at `base` in scratch (heads longer than
// SORT_PAIRS, and the position sort when the bitmap cannot rank); N2 is workgroup-uniform.
fn sortScratch(base: u32, N2: u32, t: u32) {
  for (var k = 2u; k <= N2; k <<= 1u) {
    for (var j = k >> 1u; j > 0u; j >>= 1u) {
      for (var i = t; i < N2; i += WG) {
        let l = i ^ j;
        if (l > i) {
          let a = pairAt(base, i);
          let b = pairAt(base, l);
          if (less(b, a) == ((i & k) == 0u)) {
            setPair(base, i, b);
            setPair(base, l, a);
          }
        }
      }
      storageBarrier();
    }
  }
}

// A head of up to SORT_PAIRS keys sorts in workgroup memory. Each thread sorts and
// merges runs of 16 keys in registers (the bitonic passes of stride < 16: one load and
// store of the run, no barrier between them); the passes of stride >= 16 go through
// workgroup memory. Pair i lives at pad(i): one spare pair per 16 puts the 16 lanes of
// a half-warp's 8-byte run loads on distinct banks.
const SORT_PAIRS = {{SORT_PAIRS}}u;
var<workgroup> sp: array<vec2<u32>, SORT_PAIRS + SORT_PAIRS / 16u>;
fn pad(i: u32) -> u32 { return i + (i >> 4u); }

// insert a zero bit at stride j into c: the lower index of compare-exchange c
fn lower(c: u32, j: u32) -> u32 { return ((c & ~(j - 1u)) << 1u) | (c & (j - 1u)); }

// one bitonic pass of stride j (< 16) of block size k over the run at `first` in r;
// a key's direction follows its global index, as in the sort over workgroup memory
fn runPass(r: ptr<function, array<vec2<u32>, 16>>, first: u32, k: u32, j: u32) {
#unroll c 8
  {
    let m = lower({{c}}u, j);
    let a = (*r)[m];
    let b = (*r)[m | j];
    if (less(b, a) == (((first + m) & k) == 0u)) {
      (*r)[m] = b;
      (*r)[m | j] = a;
    }
  }
#endunroll
}

// Ascending sort of the NS pairs in sp (a power of two, 16..SORT_PAIRS; workgroup-uniform).
fn sortLocal(NS: u32, t: u32) {
  let runs = NS / 16u;
  var r: array<vec2<u32>, 16>;
  if (t < runs) {
    let first = 16u * t;
#unroll m 16
    r[{{m}}] = sp[17u * t + {{m}}u];
#endunroll
    runPass(&r, first, 2u, 1u);
    runPass(&r, first, 4u, 2u);
    runPass(&r, first, 4u, 1u);
    runPass(&r, first, 8u, 4u);
    runPass(&r, first, 8u, 2u);
    runPass(&r, first, 8u, 1u);
    runPass(&r, first, 16u, 8u);
    runPass(&r, first, 16u, 4u);
    runPass(&r, first, 16u, 2u);
    runPass(&r, first, 16u, 1u);
#unroll m 16
    sp[17u * t + {{m}}u] = r[{{m}}];
#endunroll
  }
  workgroupBarrier();
  for (var k = 32u; k <= NS; k <<= 1u) {
    for (var j = k >> 1u; j >= 16u; j >>= 1u) {
      for (var c = t; c < NS / 2u; c += WG) {
        let i = lower(c, j);
        let a = sp[pad(i)];
        let b = sp[pad(i | j)];
        if (less(b, a) == ((i & k) == 0u)) {
          sp[pad(i)] = b;
          sp[pad(i | j)] = a;
        }
      }
      workgroupBarrier();
    }
    if (t < runs) {
      let first = 16u * t;
#unroll m 16
      r[{{m}}] = sp[17u * t + {{m}}u];
#endunroll
      runPass(&r, first, k, 8u);
      runPass(&r, first, k, 4u);
      runPass(&r, first, k, 2u);
      runPass(&r, first, k, 1u);
#unroll m 16
      sp[17u * t + {{m}}u] = r[{{m}}];
#endunroll
    }
    workgroupBarrier();
  }
}

// Position bitmap: bit p set for each key at position p. Thread t owns words
// [t POS_PER, (t + 1) POS_PER); after countBits `scan[t]` counts the set bits of
// threads 0..t (kv_plan_head's workgroupScan).
const POS_WORDS = {{POS_WORDS}}u;
const POS_PER = (POS_WORDS + WG - 1u) / WG;
var<workgroup> bits: array<atomic<u32>, POS_WORDS>;

// keys at positions below p (p < 32 POS_WORDS, after the prefix counts)
fn rankOf(p: u32) -> u32 {
  let w = p >> 5u;
  let owner = w / POS_PER;
  var r = countOneBits(atomicLoad(&bits[w]) & ((1u << (p & 31u)) - 1u));
  if (owner > 0u) { r += scan[owner - 1u]; }
  for (var v = w - w % POS_PER; v < w; v++) { r += countOneBits(atomicLoad(&bits[v])); }
  return r;
}

// Marks position p in the bitmap; a position past it or one held twice makes the
// bitmap unable to rank (the head then ranks by sorting).
fn mark(p: u32) {
  if (p >= 32u * POS_WORDS) {
    atomicStore(&wBad, 1u);
  } else {
    let bit = 1u << (p & 31u);
    if ((atomicOr(&bits[p >> 5u], bit) & bit) != 0u) { atomicStore(&wBad, 1u); }
  }
}

fn clearBits(t: u32) {
  for (var w = t; w < POS_WORDS; w += WG) { atomicStore(&bits[w], 0u); }
  if (t == 0u) { atomicStore(&wBad, 0u); }
  workgroupBarrier();
}

// After every position is marked: false when the bitmap cannot rank, else the prefix
// counts in `scan` (workgroup-uniform).
fn countBits(t: u32) -> bool {
  workgroupBarrier();
  if (t == 0u) { wBadOnce = atomicLoad(&wBad); }
  if (workgroupUniformLoad(&wBadOnce) != 0u) { return false; }
  var mine = 0u;
  for (var v = t * POS_PER; v < min((t + 1u) * POS_PER, POS_WORDS); v++) { mine += countOneBits(atomicLoad(&bits[v])); }
  workgroupScan(t, mine);
  return true;
}

// order (slot by rank), raw (score by rank) and the position of each rank at A (the
// even words), by sorting (position, slot) pairs in scratch
fn rankBySort(hd: Head, n: u32, N2: u32, A: u32, order: u32, raw: u32, t: u32) {
  for (var i = t; i < N2; i += WG) {
    var v = vec2<u32>(LAST, LAST);
    if (i < n) {
      v = vec2<u32>(posPool[kvSlot(hd.tableOffset, i)], i);
    }
    setPair(A, i, v);
  }
  storageBarrier();
  sortScratch(A, N2, t);
  for (var r = t; r < n; r += WG) {
    let slot = scratch[A + 2u * r + 1u];
    scratch[order + r] = slot;
    scratch[raw + r] = bitcast<u32>(scores[kvSlot(hd.tableOffset, slot)]);
  }
  storageBarrier();
}

// A key's (pooled score bits, rank), or LAST for a protected one (counted). The raw
// score and position of rank r are at sp[pad(r)] (local) or raw and A in scratch.
fn pooled(hd: Head, r: u32, n: u32, A: u32, raw: u32, local: bool) -> vec2<u32> {
  var pos = 0u;
  if (local) { pos = sp[pad(r)].y; } else { pos = scratch[A + 2u * r]; }
  if (pos >= hd.protectFrom) {
    atomicAdd(&wProtected, 1u);
    return vec2<u32>(LAST, LAST);
  }
  var m = 0.0;
  let lo = select(0u, r - hd.radius, r >= hd.radius);
  let hiR = min(n - 1u, r + hd.radius);
  for (var j = lo; j <= hiR; j++) {
    var b = 0u;
    if (local) { b = sp[pad(j)].x; } else { b = scratch[raw + j]; }
    m = max(m, bitcast<f32>(b));
  }
  return vec2<u32>(bitcast<u32>(m), r);
}

// keys a thread holds in registers on the workgroup-memory path: i = t + WG u
const KPT = {{KPT}}u;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let hi = wid.x + wid.y * nwg.x;
  if (t == 0u) {
    wLen = select(0u, info[min(hi, P.nHeads - 1u)].len, hi < P.nHeads);
    atomicStore(&wProtected, 0u);
  }
  let n = workgroupUniformLoad(&wLen);
  let N2 = nextPow2(n);
  let NS = max(N2, 16u);
  if (hi >= P.nHeads || NS <= P.minNS || NS > P.maxNS) { return; }
  let hd = info[hi];
  let A = hd.base;
  let order = hd.base + 2u * N2;
  let raw = hd.base + 3u * N2;
  let local = NS <= SORT_PAIRS;

  clearBits(t);
  if (local) {
    // 1. (raw score, position) of each rank into sp, through registers: every key is
    //    read from the pool once
    var kp: array<vec2<u32>, KPT>;
#unroll u KPT
    {
      let i = t + {{u}}u * WG;
      if (i < n) {
        let q = kvSlot(hd.tableOffset, i);
        kp[{{u}}] = vec2<u32>(bitcast<u32>(scores[q]), posPool[q]);
        mark(kp[{{u}}].y);
      }
    }
#endunroll
    if (countBits(t)) {
#unroll u KPT
      {
        let i = t + {{u}}u * WG;
        if (i < n) {
          let r = rankOf(kp[{{u}}].y);
          scratch[order + r] = i;
          sp[pad(r)] = kp[{{u}}];
        }
      }
#endunroll
    } else {
      rankBySort(hd, n, N2, A, order, raw, t);
      for (var r = t; r < n; r += WG) { sp[pad(r)] = vec2<u32>(scratch[raw + r], scratch[A + 2u * r]); }
    }
    workgroupBarrier();
    // 2-3. pooled in registers (neighbours are read from sp), then sorted in sp
#unroll u KPT
    {
      let r = t + {{u}}u * WG;
      kp[{{u}}] = vec2<u32>(LAST, LAST);
      if (r < n) { kp[{{u}}] = pooled(hd, r, n, A, raw, true); }
    }
#endunroll
    workgroupBarrier();
#unroll u KPT
    if (t + {{u}}u * WG < NS) { sp[pad(t + {{u}}u * WG)] = kp[{{u}}]; }
#endunroll
    workgroupBarrier();
    sortLocal(NS, t);
    // kv_evict reads the ranks of the sorted order
    for (var j = t; j < n; j += WG) { scratch[A + 2u * j + 1u] = sp[pad(j)].y; }
  } else {
    // 1. into scratch
    for (var i = t; i < n; i += WG) { mark(posPool[kvSlot(hd.tableOffset, i)]); }
    if (countBits(t)) {
      for (var i = t; i < n; i += WG) {
        let q = kvSlot(hd.tableOffset, i);
        let p = posPool[q];
        let r = rankOf(p);
        scratch[order + r] = i;
        scratch[raw + r] = bitcast<u32>(scores[q]);
        scratch[A + 2u * r] = p;
      }
      storageBarrier();
    } else {
      rankBySort(hd, n, N2, A, order, raw, t);
    }
    // 2-3. in place: each thread reads its own rank's position before overwriting it
    for (var r = t; r < N2; r += WG) {
      var v = vec2<u32>(LAST, LAST);
      if (r < n) { v = pooled(hd, r, n, A, raw, false); }
      setPair(A, r, v);
    }
    storageBarrier();
    sortScratch(A, N2, t);
  }

  // 4. evictable count and chunk sums
  workgroupBarrier();
  let nc = n - atomicLoad(&wProtected);
  if (t == 0u) { out[hi] = nc; }
  let chunks = (nc + hd.chunk - 1u) / hd.chunk;
  for (var c = t; c < chunks; c += WG) {
    var s = 0.0;
    let end = min(nc, (c + 1u) * hd.chunk);
    for (var j = c * hd.chunk; j < end; j++) {
      var key = 0u;
      if (local) { key = sp[pad(j)].x; } else { key = scratch[A + 2u * j]; }
      s += bitcast<f32>(key);
    }
    out[hd.outBase + c] = bitcast<u32>(s);
  }
}
