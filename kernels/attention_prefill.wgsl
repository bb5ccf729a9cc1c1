// Flash-attention prefill over per-head block tables. One workgroup per (tile of up to
// BQ query rows of one sequence, KV head h): its NQP query vectors (row, g) cover the
// whole GQA group, so each K/V tile is staged once in workgroup memory for all of them.
// Row i of a sequence sees head h's keys j < lenBefore + i + 1 (attention.wgsl's rule),
// through that sequence's block table only. Keys go by in tiles of BK with an online
// softmax (running max m, partial sums, f32 output accumulators in registers).
// Thread t = qg * KG + kg owns query vectors qg * QPT + [0, QPT): the keys
// kg + KG * u of each K tile (scores), the dims 8 * (kg + KG * c) + [0, 8) of the
// output. K and V share one staging buffer (K for the scores, then V).
// Tiles are (first row, row count) entries of `rows` from P.tileBase on.
// Split-K: workgroup z covers keys [z * splitLen, (z + 1) * splitLen); SPLIT writes the
// unnormalized (m, l, o) partials for attn_merge (attention.wgsl's layout), rows with
// no key in the range neutral ones (m = -3e38, l = 0), otherwise the output directly.
// SCORES (unsplit only): rows whose rows[r].w names a score slot also write their scaled logits
// (sraw[(slot * H + qh) * sStride + j]) and their log-sum-exp (sraw[lseBase + slot * H + qh]),
// the same values attention.wgsl writes into sraw and lse, for kv_scores.
struct Params { layer: u32, H: u32, KVH: u32, L: u32, BS: u32, ldq: u32, scale: f32, tileBase: u32, sStride: u32, lseBase: u32, splitLen: u32, nsplit: u32, }
@group(0) @binding(0) var<storage, read> qkv: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> rows: array<vec4<u32>>;   // (seq, i, pos, slot) per row, then tiles
@group(0) @binding(2) var<storage, read> heads: array<vec2<u32>>;  // (blockListOffset, lenBefore)
@group(0) @binding(3) var<storage, read> blockIds: array<u32>;
@group(0) @binding(4) var<storage, read> Kp: array<vec4<u32>>;     // 8 f16 per vec4
@group(0) @binding(5) var<storage, read> Vp: array<vec4<u32>>;
#if SPLIT
@group(0) @binding(6) var<storage, read_write> partML: array<vec2<f32>>; // [r][qh][split]
@group(0) @binding(7) var<storage, read_write> partO: array<f32>;        // [r][qh][split][D]
@group(0) @binding(8) var<uniform> P: Params;
#else
@group(0) @binding(6) var<storage, read_write> O: array<f32>;      // [r][H * D]
#if SCORES
@group(0) @binding(7) var<storage, read_write> sraw: array<f32>;   // [slot][qh][sStride], then lse [slot][qh]
@group(0) @binding(8) var<uniform> P: Params;
#else
@group(0) @binding(7) var<uniform> P: Params;
#endif
#endif
#include kv_slot

const WG = {{WG}}u;
const G = {{G}}u;
const D = {{D}}u;
const BQ = {{BQ}}u;   // rows per tile: NQ = BQ * G <= NQP query vectors
const BK = {{BK}}u;   // keys per tile
const KG = {{KG}}u;   // threads per query group
const QPT = {{QPT}}u; // query vectors per thread
const NQP = (WG / KG) * QPT;
const NQ = BQ * G;
const KPT = BK / KG;  // keys per thread in the score phase
const D8 = D / 8u;    // vec4<u32> (8 f16) per K/V row
const CPT = D8 / KG;  // 8-dim chunks per thread in the output phase
const QSTR = D / 4u + 1u; // padded rows: different query vectors fall in different banks
const KSTR = D8 + 1u;
const NEG = -3.0e38;
const NO_SLOT = 0xffffffffu;

var<workgroup> qs: array<vec4<f32>, NQP * QSTR>; // scaled queries [q][D]
var<workgroup> kv: array<vec4<u32>, BK * KSTR>;  // K tile, then V tile [key][D]
var<workgroup> ps: array<f32, BK * NQP>;         // probabilities [key][q]
var<workgroup> red: array<f32, NQP * KG>;        // per-thread partial maxima, then sums
var<workgroup> wend: u32;

fn unpack8(u: vec4<u32>) -> array<f32, 8> {
  let a = unpack2x16float(u.x);
  let b = unpack2x16float(u.y);
  let c = unpack2x16float(u.z);
  let d = unpack2x16float(u.w);
  return array<f32, 8>(a.x, a.y, b.x, b.y, c.x, c.y, d.x, d.y);
}

// keys [k0, k0 + BK) of head hd's K (or V) into kv, zeros from `end` on
fn stage(t: u32, hd: vec2<u32>, k0: u32, end: u32, values: bool) {
  for (var idx = t; idx < BK * D8; idx += WG) {
    let kk = idx / D8;
    let j = k0 + kk;
    var v = vec4<u32>(0u);
    if (j < end) {
      let at = kvSlot(hd.x, j) * D8 + idx % D8;
      if (values) { v = Vp[at]; } else { v = Kp[at]; }
    }
    kv[kk * KSTR + idx % D8] = v;
  }
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let h = wid.x;
  let tile = rows[P.tileBase + wid.y];
  let r0 = tile.x;
  let nr = tile.y;
  let first = rows[r0];
  let hd = heads[(first.x * P.L + P.layer) * P.KVH + h];
  // keys seen by the tile's last row; the key loop holds barriers, so its bound must be uniform
  if (t == 0u) { wend = hd.y + first.y + nr; }
  let kstart = wid.z * P.splitLen;
  let end = min(workgroupUniformLoad(&wend), kstart + P.splitLen);
  let qg = t / KG;
  let kg = t % KG;

  for (var idx = t; idx < NQP * (D / 4u); idx += WG) {
    let q = idx / (D / 4u);
    let c = idx % (D / 4u);
    let row = q / G;
    var v = vec4<f32>(0.0);
    if (q < NQ && row < nr) { v = qkv[((r0 + row) * P.ldq + (h * G + q % G) * D) / 4u + c] * P.scale; }
    qs[q * QSTR + c] = v;
  }

  // per owned query vector: keys below lim are visible (0 for padding), score slot, softmax state
  var lim: array<u32, QPT>;
  var slot: array<u32, QPT>;
  var m: array<f32, QPT>;
  var lp: array<f32, QPT>;
  var acc: array<array<f32, 8>, QPT * CPT>;
  for (var i = 0u; i < QPT; i++) {
    let q = qg * QPT + i;
    let row = q / G;
    lim[i] = 0u;
    slot[i] = NO_SLOT;
    if (q < NQ && row < nr) {
      let rw = rows[r0 + row];
      lim[i] = hd.y + rw.y + 1u;
      slot[i] = rw.w;
    }
    m[i] = NEG;
    lp[i] = 0.0;
  }

  for (var k0 = kstart; k0 < end; k0 += BK) {
    stage(t, hd, k0, end, false);
    workgroupBarrier();

    // scores of the owned (query vector, key) pairs
    var s = array<array<f32, KPT>, QPT>();
    for (var c = 0u; c < D8; c++) {
      var qa: array<vec4<f32>, QPT>;
      var qb: array<vec4<f32>, QPT>;
      for (var i = 0u; i < QPT; i++) {
        qa[i] = qs[(qg * QPT + i) * QSTR + 2u * c];
        qb[i] = qs[(qg * QPT + i) * QSTR + 2u * c + 1u];
      }
      for (var u = 0u; u < KPT; u++) {
        let k = unpack8(kv[(kg + KG * u) * KSTR + c]);
        let ka = vec4<f32>(k[0], k[1], k[2], k[3]);
        let kb = vec4<f32>(k[4], k[5], k[6], k[7]);
        for (var i = 0u; i < QPT; i++) { s[i][u] += dot(qa[i], ka) + dot(qb[i], kb); }
      }
    }
    for (var i = 0u; i < QPT; i++) {
      var mt = NEG;
      for (var u = 0u; u < KPT; u++) {
        let j = k0 + kg + KG * u;
        if (j < lim[i] && j < end) {
          mt = max(mt, s[i][u]);
#if SCORES
          if (slot[i] != NO_SLOT) {
            let q = qg * QPT + i;
            sraw[(slot[i] * P.H + h * G + q % G) * P.sStride + j] = s[i][u];
          }
#endif
        } else {
          s[i][u] = NEG;
        }
      }
      red[(qg * QPT + i) * KG + kg] = mt;
    }
    workgroupBarrier();

    // online softmax: every thread of a group derives the same new max
    var alpha: array<f32, QPT>;
    for (var i = 0u; i < QPT; i++) {
      var mt = m[i];
      for (var x = 0u; x < KG; x++) { mt = max(mt, red[(qg * QPT + i) * KG + x]); }
      alpha[i] = exp(m[i] - mt);
      m[i] = mt;
      var sum = 0.0;
      for (var u = 0u; u < KPT; u++) {
        let p = select(0.0, exp(s[i][u] - mt), s[i][u] > NEG);
        ps[(kg + KG * u) * NQP + qg * QPT + i] = p;
        sum += p;
      }
      lp[i] = lp[i] * alpha[i] + sum;
      for (var c = 0u; c < CPT; c++) {
        for (var e = 0u; e < 8u; e++) { acc[i * CPT + c][e] *= alpha[i]; }
      }
    }
    // every thread is past its score loop: the K tile can be overwritten by V
    stage(t, hd, k0, end, true);
    workgroupBarrier();

    for (var kk = 0u; kk < BK; kk++) {
      var p: array<f32, QPT>;
      for (var i = 0u; i < QPT; i++) { p[i] = ps[kk * NQP + qg * QPT + i]; }
      for (var c = 0u; c < CPT; c++) {
        let v = unpack8(kv[kk * KSTR + kg + KG * c]);
        for (var i = 0u; i < QPT; i++) {
          for (var e = 0u; e < 8u; e++) { acc[i * CPT + c][e] = fma(p[i], v[e], acc[i * CPT + c][e]); }
        }
      }
    }
    workgroupBarrier();
  }

  // the row sum is spread over the KG threads of a group
  for (var i = 0u; i < QPT; i++) { red[(qg * QPT + i) * KG + kg] = lp[i]; }
  workgroupBarrier();
  for (var i = 0u; i < QPT; i++) {
    if (lim[i] == 0u) { continue; }
    let q = qg * QPT + i;
    var l = 0.0;
    for (var x = 0u; x < KG; x++) { l += red[q * KG + x]; }
    let row = q / G;
    let qh = h * G + q % G;
#if SPLIT
    let pi = ((r0 + row) * P.H + qh) * P.nsplit + wid.z;
    for (var c = 0u; c < CPT; c++) {
      let d0 = 8u * (kg + KG * c);
      for (var e = 0u; e < 8u; e++) { partO[pi * D + d0 + e] = acc[i * CPT + c][e]; }
    }
    if (kg == 0u) { partML[pi] = vec2<f32>(m[i], l); }
#else
    let base = (r0 + row) * P.H * D + qh * D;
    for (var c = 0u; c < CPT; c++) {
      let d0 = 8u * (kg + KG * c);
      for (var e = 0u; e < 8u; e++) { O[base + d0 + e] = acc[i * CPT + c][e] / l; }
    }
#endif
#if SCORES
    if (kg == 0u && slot[i] != NO_SLOT) { sraw[P.lseBase + slot[i] * P.H + qh] = m[i] + log(l); }
#endif
  }
}
