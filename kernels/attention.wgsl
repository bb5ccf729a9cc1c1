// Paged attention over per-head block tables, for prefill and decode alike.
// Query row r (new token i of sequence s) attends, in KV head h, to that head's
// first lenBefore + i + 1 cached tokens (causal; per-head lengths may differ after
// compression). One workgroup serves the whole GQA group of h (G query heads), so
// each K/V row is read once for G heads. Split-K: workgroup z covers keys
// [z * splitLen, (z + 1) * splitLen) with an online softmax; SPLIT writes (m, l, o)
// partials for attn_merge, otherwise the normalized output directly.
// SCORES: rows whose rows[r].w names a score slot also write their scaled logits
// (sraw) and, unsplit, their log-sum-exp; kv_scores turns them into the squared
// attention each key received (KV-Compress's eviction metric).
struct Params { layer: u32, H: u32, KVH: u32, L: u32, BS: u32, ldq: u32, scale: f32, splitLen: u32, nsplit: u32, sStride: u32, }
@group(0) @binding(0) var<storage, read> qkv: array<f32>;
@group(0) @binding(1) var<storage, read> rows: array<vec4<u32>>;   // (seq, i, pos, 0)
@group(0) @binding(2) var<storage, read> heads: array<vec2<u32>>;  // (blockListOffset, lenBefore)
@group(0) @binding(3) var<storage, read> blockIds: array<u32>;
@group(0) @binding(4) var<storage, read> Kp: array<u32>;
@group(0) @binding(5) var<storage, read> Vp: array<u32>;
#if SPLIT
@group(0) @binding(6) var<storage, read_write> partML: array<vec2<f32>>; // [r][qh][split]
@group(0) @binding(7) var<storage, read_write> partO: array<f32>;        // [r][qh][split][D]
#if SCORES
@group(0) @binding(8) var<storage, read_write> sraw: array<f32>;         // [slot][qh][sStride]
@group(0) @binding(9) var<uniform> P: Params;
#else
@group(0) @binding(8) var<uniform> P: Params;
#endif
#else
@group(0) @binding(6) var<storage, read_write> O: array<f32>;            // [r][H * D]
#if SCORES
@group(0) @binding(7) var<storage, read_write> sraw: array<f32>;         // [slot][qh][sStride]
@group(0) @binding(8) var<storage, read_write> lse: array<f32>;          // [slot][qh]
@group(0) @binding(9) var<uniform> P: Params;
#else
@group(0) @binding(7) var<uniform> P: Params;
#endif
#endif

const WG = {{WG}}u;
const G = {{G}}u;
const D = {{D}}u;
const HALF = D / 2u;
const OUTS = {{OUTS}}u; // ceil(G * D / WG)
const NEG = -3.0e38;
const NO_SLOT = 0xffffffffu;

var<workgroup> qs: array<f32, G * D>;
var<workgroup> sc: array<f32, G * WG>;
var<workgroup> physs: array<u32, WG>;
var<workgroup> mrun: array<f32, G>;
var<workgroup> lrun: array<f32, G>;
var<workgroup> alpha: array<f32, G>;
var<workgroup> wlen: u32;

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let h = wid.x;
  let r = wid.y;
  let sp = wid.z;
  let row = rows[r];
  let hd = heads[(row.x * P.L + P.layer) * P.KVH + h];
  if (t == 0u) { wlen = hd.y + row.y + 1u; }
  // the loop below holds barriers, so its bounds must be provably uniform
  let len = workgroupUniformLoad(&wlen);
  let start = sp * P.splitLen;
  let end = min(len, start + P.splitLen);
  for (var i = t; i < G * D; i += WG) { qs[i] = qkv[r * P.ldq + h * G * D + i] * P.scale; }
  if (t < G) { mrun[t] = NEG; lrun[t] = 0.0; }
  var acc: array<f32, OUTS>;
  workgroupBarrier();
  for (var t0 = start; t0 < end; t0 += WG) {
    let j = t0 + t;
    if (j < end) {
      let phys = blockIds[hd.x + j / P.BS] * P.BS + j % P.BS;
      physs[t] = phys;
      var dots = array<f32, G>();
      for (var p = 0u; p < HALF; p++) {
        let k = unpack2x16float(Kp[phys * HALF + p]);
        for (var g = 0u; g < G; g++) {
          dots[g] += qs[g * D + 2u * p] * k.x + qs[g * D + 2u * p + 1u] * k.y;
        }
      }
      for (var g = 0u; g < G; g++) { sc[g * WG + t] = dots[g]; }
#if SCORES
      if (row.w != NO_SLOT) {
        for (var g = 0u; g < G; g++) { sraw[(row.w * P.H + h * G + g) * P.sStride + j] = dots[g]; }
      }
#endif
    } else {
      for (var g = 0u; g < G; g++) { sc[g * WG + t] = NEG; }
    }
    workgroupBarrier();
    if (t < G) {
      var mt = NEG;
      for (var i = 0u; i < WG; i++) { mt = max(mt, sc[t * WG + i]); }
      let mn = max(mrun[t], mt);
      alpha[t] = exp(mrun[t] - mn);
      mrun[t] = mn;
    }
    workgroupBarrier();
    for (var g = 0u; g < G; g++) {
      let s = sc[g * WG + t];
      sc[g * WG + t] = select(0.0, exp(s - mrun[g]), s > NEG);
    }
    workgroupBarrier();
    if (t < G) {
      var s = 0.0;
      for (var i = 0u; i < WG; i++) { s += sc[t * WG + i]; }
      lrun[t] = lrun[t] * alpha[t] + s;
    }
    let nt = min(WG, end - t0);
    for (var o = 0u; o < OUTS; o++) {
      let idx = t + o * WG;
      if (idx < G * D) {
        let g = idx / D;
        let d = idx % D;
        var a = acc[o] * alpha[g];
        for (var i = 0u; i < nt; i++) {
          let v = unpack2x16float(Vp[physs[i] * HALF + d / 2u]);
          a += sc[g * WG + i] * select(v.x, v.y, (d & 1u) == 1u);
        }
        acc[o] = a;
      }
    }
    workgroupBarrier();
  }
  for (var o = 0u; o < OUTS; o++) {
    let idx = t + o * WG;
    if (idx < G * D) {
      let g = idx / D;
      let d = idx % D;
      let qh = h * G + g;
#if SPLIT
      let pi = (r * P.H + qh) * P.nsplit + sp;
      partO[pi * D + d] = acc[o];
      if (d == 0u) { partML[pi] = vec2<f32>(mrun[g], lrun[g]); }
#else
      O[r * P.H * D + qh * D + d] = acc[o] / lrun[g];
#if SCORES
      if (d == 0u && row.w != NO_SLOT) { lse[row.w * P.H + qh] = mrun[g] + log(lrun[g]); }
#endif
#endif
    }
  }
}
