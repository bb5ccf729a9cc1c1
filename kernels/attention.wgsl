// Paged flash-decoding attention over per-head block tables (decode, and prefill
// chunks too short for attention_prefill.wgsl). Query row r (new token i of sequence
// s) attends, in KV head h, to that head's first lenBefore + i + 1 cached tokens
// (causal; per-head lengths may differ after compression). Workgroup (x, r, z) serves
// G query heads of KV head x / NG (the whole GQA group when NG = 1), so each K/V row is
// read once for them, over the keys [z * splitLen, (z + 1) * splitLen) of its head.
// Layout: LANES lanes per key (lane l holds dims [l * CW, (l + 1) * CW) of every query
// in registers and reads those dims of K and V as one 8- or 16-byte load, so a key row
// is read contiguously), KPP = WG / LANES keys side by side, NK keys per thread in a
// tile of BK = KPP * NK keys. Per tile: dot partials, reduced across the key's lanes
// (subgroupShuffleXor where the subgroup holds LANES lanes, else through workgroup
// memory), scores into sc; then every thread takes the tile max from sc itself (no
// serial reduction), rescales its running output and sum, and accumulates p * V of its
// own keys. After the last tile the KPP key slots' outputs and sums are added up
// through workgroup memory, PG heads at a time.
// SPLIT writes unnormalized (m, l, o) partials for attn_merge (empty splits write
// m = -3e38, l = 0, o = 0), otherwise the normalized output directly.
// SCORES: rows whose rows[r].w names a score slot also write their scaled logits
// (sraw) and, unsplit, their log-sum-exp; kv_scores turns them into the squared
// attention each key received (KV-Compress's eviction metric).
struct Params { layer: u32, H: u32, KVH: u32, L: u32, BS: u32, ldq: u32, scale: f32, splitLen: u32, nsplit: u32, sStride: u32, }
@group(0) @binding(#) var<storage, read> qkv: array<vec4<f32>>;
@group(0) @binding(#) var<storage, read> rows: array<vec4<u32>>;   // (seq, i, pos, slot)
@group(0) @binding(#) var<storage, read> heads: array<vec2<u32>>;  // (blockListOffset, lenBefore)
@group(0) @binding(#) var<storage, read> blockIds: array<u32>;
#if WIDE
@group(0) @binding(#) var<storage, read> Kp: array<vec4<u32>>;     // 8 f16 per element
@group(0) @binding(#) var<storage, read> Vp: array<vec4<u32>>;
#else
@group(0) @binding(#) var<storage, read> Kp: array<vec2<u32>>;     // 4 f16 per element
@group(0) @binding(#) var<storage, read> Vp: array<vec2<u32>>;
#endif
#if SPLIT
@group(0) @binding(#) var<storage, read_write> partML: array<vec2<f32>>; // [r][qh][split]
@group(0) @binding(#) var<storage, read_write> partOs: array<f32>;       // [r][qh][split][D]
#else
@group(0) @binding(#) var<storage, read_write> Os: array<f32>;           // [r][H * D]
#endif
#if SCORES
@group(0) @binding(#) var<storage, read_write> sraw: array<f32>;         // [slot][qh][sStride]
#if !SPLIT
@group(0) @binding(#) var<storage, read_write> lse: array<f32>;          // [slot][qh]
#endif
#endif
@group(0) @binding(#) var<uniform> P: Params;
#include kv_slot

const WG = {{WG}}u;
const G = {{G}}u;         // query heads per workgroup
const NG = {{NG}}u;       // workgroups per GQA group
const D = {{D}}u;
const CW = {{CW}}u;       // dims per lane: 8 (vec4<u32> loads) or 4 (vec2<u32>)
const CV = CW / 4u;       // vec4<f32> per lane and head
const LANES = {{LANES}}u; // power of two >= D / CW
const DL = D / CW;        // lanes that hold dims
const NK = {{NK}}u;
const PG = {{PG}}u;         // heads per pass of the slot sum
const KPP = WG / LANES;
const BK = KPP * NK;      // a multiple of 4
const PSTR = LANES + 1u;  // padded dot partials: lanes of one key in different banks
const NEG = -3.0e38;
const NO_SLOT = 0xffffffffu;

var<workgroup> sc: array<vec4<f32>, G * BK / 2u>;       // scores [tile parity][g][key]
var<workgroup> scratch: array<f32, {{SCRATCH}}>;        // dot partials, then the slot sums
var<workgroup> redl: array<f32, KPP * G>;              // per-slot softmax sums
var<workgroup> wuni: vec2<u32>;                         // (length, subgroup size)

#if WIDE
fn unpackKV(u: vec4<u32>) -> array<vec4<f32>, CV> {
  return array<vec4<f32>, CV>(vec4<f32>(unpack2x16float(u.x), unpack2x16float(u.y)), vec4<f32>(unpack2x16float(u.z), unpack2x16float(u.w)));
}
#else
fn unpackKV(u: vec2<u32>) -> array<vec4<f32>, CV> {
  return array<vec4<f32>, CV>(vec4<f32>(unpack2x16float(u.x), unpack2x16float(u.y)));
}
#endif

fn scoreAt(i: u32) -> f32 { return sc[i / 4u][i % 4u]; }

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32
#if SUBGROUPS
  , @builtin(subgroup_size) sgs: u32
#endif
) {
  let h = wid.x / NG;
  let qh0 = wid.x * G;
  let r = wid.y;
  let sp = wid.z;
  let row = rows[r];
  let hd = heads[(row.x * P.L + P.layer) * P.KVH + h];
  if (t == 0u) {
#if SUBGROUPS
    wuni = vec2<u32>(hd.y + row.y + 1u, sgs);
#else
    wuni = vec2<u32>(hd.y + row.y + 1u, 0u);
#endif
  }
  // the loops below hold barriers, so their bounds must be provably uniform
  let uni = workgroupUniformLoad(&wuni);
  let len = uni.x;
  // subgroup lanes are consecutive invocations (as gemv.wgsl assumes), so a key's
  // LANES aligned lanes share a subgroup once it is at least LANES wide
  let shfl = uni.y >= LANES;
  let start = sp * P.splitLen;
  let end = min(len, start + P.splitLen);
  let lane = t % LANES;
  let ks = t / LANES;
  let live = lane < DL;

  var q: array<vec4<f32>, G * CV>;
  if (live) {
    for (var g = 0u; g < G; g++) {
      for (var c = 0u; c < CV; c++) { q[g * CV + c] = qkv[(r * P.ldq + (qh0 + g) * D + lane * CW) / 4u + c] * P.scale; }
    }
  }
  var acc: array<vec4<f32>, G * CV>;
  var m: array<f32, G>;
  var l: array<f32, G>;
  for (var g = 0u; g < G; g++) { m[g] = NEG; }

  var par = 0u;
  for (var t0 = start; t0 < end; t0 += BK) {
    let buf = par * G * BK;
#if WIDE
    var kk: array<vec4<u32>, NK>;
    var vv: array<vec4<u32>, NK>;
#else
    var kk: array<vec2<u32>, NK>;
    var vv: array<vec2<u32>, NK>;
#endif
    // every load of the tile first, so they are in flight together
    for (var k = 0u; k < NK; k++) {
      let j = t0 + k * KPP + ks;
      if (j < end && live) {
        let at = kvSlot(hd.x, j) * DL + lane;
        kk[k] = Kp[at];
        vv[k] = Vp[at];
      }
    }
    var part: array<f32, NK * G>;
    for (var k = 0u; k < NK; k++) {
      let kx = unpackKV(kk[k]);
      for (var g = 0u; g < G; g++) {
        var s = 0.0;
        for (var c = 0u; c < CV; c++) { s += dot(q[g * CV + c], kx[c]); }
        part[k * G + g] = s;
      }
    }
    if (shfl) {
#if SUBGROUPS
      for (var k = 0u; k < NK; k++) {
        let jj = k * KPP + ks;
        let j = t0 + jj;
        for (var g = 0u; g < G; g++) {
          var s = part[k * G + g];
          for (var o = 1u; o < LANES; o <<= 1u) { s += subgroupShuffleXor(s, o); }
          if (lane == 0u) {
            let i = buf + g * BK + jj;
            sc[i / 4u][i % 4u] = select(NEG, s, j < end);
#if SCORES
            if (row.w != NO_SLOT && j < end) { sraw[(row.w * P.H + qh0 + g) * P.sStride + j] = s; }
#endif
          }
        }
      }
#endif
    } else {
      for (var k = 0u; k < NK; k++) {
        for (var g = 0u; g < G; g++) { scratch[((k * KPP + ks) * G + g) * PSTR + lane] = part[k * G + g]; }
      }
      workgroupBarrier();
      for (var i = t; i < BK * G; i += WG) {
        let jj = i / G;
        let g = i % G;
        let j = t0 + jj;
        var s = 0.0;
        for (var x = 0u; x < DL; x++) { s += scratch[i * PSTR + x]; }
        let si = buf + g * BK + jj;
        sc[si / 4u][si % 4u] = select(NEG, s, j < end);
#if SCORES
        if (row.w != NO_SLOT && j < end) { sraw[(row.w * P.H + qh0 + g) * P.sStride + j] = s; }
#endif
      }
    }
    // sc alternates between two halves by tile: the next tile's writes come after the
    // next barrier, which every thread reaches only once done reading this tile
    workgroupBarrier();
    // the tile's valid keys (the rest hold NEG); a bound known only at run time also
    // keeps shader compilers from unrolling this loop G times over
    let nv = (min(BK, end - t0) + 3u) / 4u;
    for (var g = 0u; g < G; g++) {
      var mt = NEG;
      for (var i = 0u; i < nv; i++) {
        let v = sc[(buf + g * BK) / 4u + i];
        mt = max(mt, max(max(v.x, v.y), max(v.z, v.w)));
      }
      let mn = max(m[g], mt);
      let a = exp(m[g] - mn);
      m[g] = mn;
      l[g] *= a;
      for (var c = 0u; c < CV; c++) { acc[g * CV + c] *= a; }
    }
    for (var k = 0u; k < NK; k++) {
      let jj = k * KPP + ks;
      let vx = unpackKV(vv[k]);
      for (var g = 0u; g < G; g++) {
        let s = scoreAt(buf + g * BK + jj);
        let p = select(0.0, exp(s - m[g]), s > NEG);
        l[g] += p;
        for (var c = 0u; c < CV; c++) { acc[g * CV + c] += p * vx[c]; }
      }
    }
    par ^= 1u;
  }

  // sum the KPP key slots, PG heads at a time through scratch; then each thread
  // finishes output elements of its own (consecutive threads, consecutive dims)
  if (lane == 0u) {
    for (var g = 0u; g < G; g++) { redl[ks * G + g] = l[g]; }
  }
  for (var p = 0u; p < G / PG; p++) {
    for (var gg = 0u; gg < PG; gg++) {
      let b = ((ks * PG + gg) * LANES + lane) * CW;
      for (var c = 0u; c < CV; c++) {
        for (var e = 0u; e < 4u; e++) { scratch[b + 4u * c + e] = acc[(p * PG + gg) * CV + c][e]; }
      }
    }
    workgroupBarrier();
    for (var i = t; i < PG * D; i += WG) {
      let gg = i / D;
      let d = i % D;
      let g = p * PG + gg;
      var o = 0.0;
      var lt = 0.0;
      for (var x = 0u; x < KPP; x++) {
        o += scratch[((x * PG + gg) * LANES + d / CW) * CW + d % CW];
        lt += redl[x * G + g];
      }
      let qh = qh0 + g;
#if SPLIT
      let pi = (r * P.H + qh) * P.nsplit + sp;
      partOs[pi * D + d] = o;
      if (d == 0u) { partML[pi] = vec2<f32>(mAt(m, g), lt); }
#else
      Os[r * P.H * D + qh * D + d] = o / lt;
#if SCORES
      if (d == 0u && row.w != NO_SLOT) { lse[row.w * P.H + qh] = mAt(m, g) + log(lt); }
#endif
#endif
    }
    workgroupBarrier();
  }
}

// m[g] without a dynamic index into the private array (which could move it to memory)
fn mAt(m: array<f32, G>, g: u32) -> f32 {
  var v = 0.0;
  for (var k = 0u; k < G; k++) { if (k == g) { v = m[k]; } }
  return v;
}
