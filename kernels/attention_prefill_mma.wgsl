// Prefill attention on subgroup matrices (tensor cores), over per-head block tables.
// The same work, bindings and outputs as attention_prefill.wgsl unsplit: one workgroup
// per (tile of up to BQ query rows of one sequence, KV head h), whose NQ = BQ * G query
// vectors (row, g) cover the GQA group; row i sees keys j < lenBefore + i + 1.
//
// NSG subgroups each own 16 query vectors. S = Q K^T and O += P V are 16 x 16 x 16
// products of f16 inputs into f32 results. Subgroup matrices cannot be scaled row by row,
// so the softmax runs in two passes over the keys instead of online: the first finds
// each row's max, the second takes p = exp(s - max) in [0, 1] (rounded to f16 for P V),
// sums them in f32, and accumulates O without ever rescaling it. Scores live in
// workgroup memory between the products, where lanes mask, exponentiate and (SCORES)
// write the raw logits and the log-sum-exp that kv_scores reads, as the other kernels do.
// Results are stored as whole 16 x 16 blocks (stride 16), the one store layout the GEMM
// has shown right on the GPU; lanes walk a block's columns rotated by their row, so the
// 16 rows a read touches fall in different banks.
// K and V tiles share one f16 staging buffer [key][d] (K^T is its column-major view),
// which first carries the scaled queries.
struct Params { layer: u32, H: u32, KVH: u32, L: u32, BS: u32, ldq: u32, scale: f32, tileBase: u32, sStride: u32, lseBase: u32, splitLen: u32, nsplit: u32, }
@group(0) @binding(#) var<storage, read> qkv: array<vec4<f32>>;
@group(0) @binding(#) var<storage, read> rows: array<vec4<u32>>;   // (seq, i, pos, slot) per row, then tiles
@group(0) @binding(#) var<storage, read> heads: array<vec2<u32>>;  // (blockListOffset, lenBefore)
@group(0) @binding(#) var<storage, read> blockIds: array<u32>;
@group(0) @binding(#) var<storage, read> Kp: array<vec4<u32>>;     // 8 f16 per vec4
@group(0) @binding(#) var<storage, read> Vp: array<vec4<u32>>;
@group(0) @binding(#) var<storage, read_write> O: array<f32>;      // [r][H * D]
#if SCORES
@group(0) @binding(#) var<storage, read_write> sraw: array<f32>;   // [slot][qh][sStride], then lse [slot][qh]
#endif
@group(0) @binding(#) var<uniform> P: Params;
#include kv_slot

const NSG = {{NSG}}u;
const WG = {{WG}}u;
const G = {{G}}u;
const D = {{D}}u;
const BQ = {{BQ}}u;   // rows per tile: BQ * G <= NSG * 16 query vectors
const BK = 64u;       // keys per tile
const NQ = BQ * G;
const D8 = D / 8u;
const DS = D + 8u;    // f16 row stride of the staging buffer (padded against bank conflicts)
const PS = BK + 8u;   // f16 row stride of a subgroup's probabilities
const NEG = -3.0e38;
const NO_SLOT = 0xffffffffu;

var<workgroup> kv: array<f16, BK * DS>;            // queries, then each K tile, then its V tile [key][d]
#if QSMEM
var<workgroup> qs: array<f16, NSG * 16u * DS>;     // the scaled queries for the whole kernel (QSMEM: loaded per product, not held)
#endif
var<workgroup> ss: array<f32, NSG * 16u * BK>;     // per subgroup: scores [BK / 16 blocks][16 q][16], then output blocks
var<workgroup> ps: array<f16, NSG * 16u * PS>;     // per subgroup: probabilities [16 q][BK]
// No scalar workgroup variable: the driver may place one ahead of the f16 arrays, and a
// matrix load or store off a 16-byte boundary reads the wrong elements (the primitive
// test of that layout).

// keys [k0, k0 + BK) of head hd's K (or V) into kv as f16, zeros from `end` on
fn stage(t: u32, hd: vec2<u32>, k0: u32, end: u32, values: bool) {
  for (var idx = t; idx < BK * D8; idx += WG) {
    let kk = idx / D8;
    let j = k0 + kk;
    var v = vec4<u32>(0u);
    if (j < end) {
      let at = kvSlot(hd.x, j) * D8 + idx % D8;
      if (values) { v = Vp[at]; } else { v = Kp[at]; }
    }
    let o = kk * DS + (idx % D8) * 8u;
    let a = bitcast<vec2<f16>>(v.x);
    let b = bitcast<vec2<f16>>(v.y);
    let c = bitcast<vec2<f16>>(v.z);
    let d = bitcast<vec2<f16>>(v.w);
    kv[o] = a.x; kv[o + 1u] = a.y; kv[o + 2u] = b.x; kv[o + 3u] = b.y;
    kv[o + 4u] = c.x; kv[o + 5u] = c.y; kv[o + 6u] = d.x; kv[o + 7u] = d.y;
  }
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32,
        @builtin(subgroup_id) sg: u32, @builtin(subgroup_invocation_id) lane: u32) {
  let h = wid.x;
  let tile = rows[P.tileBase + wid.y];
  let r0 = tile.x;
  let nr = tile.y;
  let first = rows[r0];
  let hd = heads[(first.x * P.L + P.layer) * P.KVH + h];
  // keys seen by the tile's last row; the key loops hold barriers, so their bound must be
  // uniform: read-only storage at workgroup-uniform indices is
  let end = hd.y + first.y + nr;

  // scaled queries as f16 rows of kv (query vector q = row * G + g), then into registers
  for (var idx = t; idx < NSG * 16u * (D / 4u); idx += WG) {
    let q = idx / (D / 4u);
    let c = idx % (D / 4u);
    let row = q / G;
    var v = vec4<f32>(0.0);
    if (q < NQ && row < nr) { v = qkv[((r0 + row) * P.ldq + (h * G + q % G) * D) / 4u + c] * P.scale; }
    let hv = vec4<f16>(v);
    let o = q * DS + c * 4u;
#if QSMEM
    qs[o] = hv.x; qs[o + 1u] = hv.y; qs[o + 2u] = hv.z; qs[o + 3u] = hv.w;
#else
    kv[o] = hv.x; kv[o + 1u] = hv.y; kv[o + 2u] = hv.z; kv[o + 3u] = hv.w;
#endif
  }
  workgroupBarrier();
  let q0 = sg * 16u;
#if !QSMEM
  var ql: array<subgroup_matrix_left<f16, 16, 16>, D / 16u>;
  #unroll c D/16
  ql[{{c}}] = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>>(&kv, q0 * DS + {{c}}u * 16u, false, DS);
  #endunroll
#endif
  workgroupBarrier();

  // this lane's query vector (two lanes a row: keys [hf * 32, hf * 32 + 32) of each tile)
  let qr = lane % 16u;
  let hf = lane / 16u;
  let q = q0 + qr;
  let row = q / G;
  var lim = 0u;
  var slot = NO_SLOT;
  if (q < NQ && row < nr) {
    let rw = rows[r0 + row];
    lim = hd.y + rw.y + 1u;
    slot = rw.w;
  }
  let qh = h * G + q % G;
  let sBase = sg * 16u * BK + qr * 16u;
  let pBase = sg * 16u * PS;

  // pass 1: each row's max over its visible keys
  var m = NEG;
  for (var k0 = 0u; k0 < end; k0 += BK) {
    stage(t, hd, k0, end, false);
    workgroupBarrier();
    #unroll n 4
    {
      // the first product starts the sum: a result var declared in a loop is not reliably
      // zeroed on every iteration (see the primitive test), so none is declared
#if QSMEM
      var s = subgroupMatrixMultiply<f32>(subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>>(&qs, q0 * DS, false, DS), subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>>(&kv, {{n}}u * 16u * DS, true, DS));
      #unroll c D/16-1
      s = subgroupMatrixMultiplyAccumulate(subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>>(&qs, q0 * DS + ({{c}}u + 1u) * 16u, false, DS), subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>>(&kv, {{n}}u * 16u * DS + ({{c}}u + 1u) * 16u, true, DS), s);
      #endunroll
#else
      var s = subgroupMatrixMultiply<f32>(ql[0], subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>>(&kv, {{n}}u * 16u * DS, true, DS));
      #unroll c D/16-1
      s = subgroupMatrixMultiplyAccumulate(ql[{{c}}u + 1u], subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>>(&kv, {{n}}u * 16u * DS + ({{c}}u + 1u) * 16u, true, DS), s);
      #endunroll
#endif
      subgroupMatrixStore(&ss, sg * 16u * BK + {{n}}u * 256u, s, false, 16u);
    }
    #endunroll
    workgroupBarrier();
    for (var u = 0u; u < 32u; u++) {
      let kk = hf * 32u + (u + qr) % 32u;
      let j = k0 + kk;
      if (j < lim && j < end) { m = max(m, ss[sBase + (kk / 16u) * 256u + kk % 16u]); }
    }
    workgroupBarrier();
  }
  m = max(m, subgroupShuffleXor(m, 16u));

  // pass 2: p = exp(s - m), its sum, and O += P V
  var l = 0.0;
  #unroll d D/16
  var o{{d}}: subgroup_matrix_result<f32, 16, 16>;
  #endunroll
  for (var k0 = 0u; k0 < end; k0 += BK) {
    stage(t, hd, k0, end, false);
    workgroupBarrier();
    #unroll n 4
    {
      // the first product starts the sum: a result var declared in a loop is not reliably
      // zeroed on every iteration (see the primitive test), so none is declared
#if QSMEM
      var s = subgroupMatrixMultiply<f32>(subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>>(&qs, q0 * DS, false, DS), subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>>(&kv, {{n}}u * 16u * DS, true, DS));
      #unroll c D/16-1
      s = subgroupMatrixMultiplyAccumulate(subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>>(&qs, q0 * DS + ({{c}}u + 1u) * 16u, false, DS), subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>>(&kv, {{n}}u * 16u * DS + ({{c}}u + 1u) * 16u, true, DS), s);
      #endunroll
#else
      var s = subgroupMatrixMultiply<f32>(ql[0], subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>>(&kv, {{n}}u * 16u * DS, true, DS));
      #unroll c D/16-1
      s = subgroupMatrixMultiplyAccumulate(ql[{{c}}u + 1u], subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>>(&kv, {{n}}u * 16u * DS + ({{c}}u + 1u) * 16u, true, DS), s);
      #endunroll
#endif
      subgroupMatrixStore(&ss, sg * 16u * BK + {{n}}u * 256u, s, false, 16u);
    }
    #endunroll
    workgroupBarrier();
    for (var u = 0u; u < 32u; u++) {
      let kk = hf * 32u + (u + qr) % 32u;
      let j = k0 + kk;
      var p = 0.0;
      if (j < lim && j < end) {
        let s = ss[sBase + (kk / 16u) * 256u + kk % 16u];
        p = exp(s - m);
#if SCORES
        if (slot != NO_SLOT) { sraw[(slot * P.H + qh) * P.sStride + j] = s; }
#endif
      }
      l += p;
      ps[pBase + qr * PS + kk] = f16(p);
    }
    // every subgroup is done with K: the buffer takes V
    stage(t, hd, k0, end, true);
    workgroupBarrier();
    #unroll n 4
    {
      var pl = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>>(&ps, pBase + {{n}}u * 16u, false, PS);
      #unroll d D/16
      o{{d}} = subgroupMatrixMultiplyAccumulate(pl, subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>>(&kv, {{n}}u * 16u * DS + {{d}}u * 16u, false, DS), o{{d}});
      #endunroll
    }
    #endunroll
    workgroupBarrier();
  }
  l += subgroupShuffleXor(l, 16u);

  // O / l through this subgroup's score rows, 16 dims at a time
  #unroll d D/16
  subgroupMatrixStore(&ss, sg * 16u * BK, o{{d}}, false, 16u);
  workgroupBarrier();
  if (lim > 0u) {
    for (var e = 0u; e < 8u; e++) {
      let dd = hf * 8u + e;
      O[(r0 + row) * P.H * D + qh * D + {{d}}u * 16u + dd] = ss[sBase + dd] / l;
    }
  }
  workgroupBarrier();
  #endunroll
#if SCORES
  if (lim > 0u && hf == 0u && slot != NO_SLOT) { sraw[P.lseBase + slot * P.H + qh] = m + log(l); }
#endif
}
