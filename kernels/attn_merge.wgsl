// Merge split-K attention partials: O = sum_s exp(m_s - M) o_s / sum_s exp(m_s - M) l_s.
// Empty splits carry m = -3e38, l = 0 and contribute nothing. SCORES: rows with a
// score slot also get their log-sum-exp, M + log(L), for kv_scores.
struct Params { H: u32, D: u32, nsplit: u32, }
@group(0) @binding(0) var<storage, read> partML: array<vec2<f32>>;
@group(0) @binding(1) var<storage, read> partO: array<f32>;
@group(0) @binding(2) var<storage, read_write> O: array<f32>;
#if SCORES
@group(0) @binding(3) var<storage, read> rows: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read_write> lse: array<f32>;
@group(0) @binding(5) var<uniform> P: Params;
#else
@group(0) @binding(3) var<uniform> P: Params;
#endif

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let qh = wid.x;
  let r = wid.y;
  let base = (r * P.H + qh) * P.nsplit;
  var M = -3.0e38;
  for (var s = 0u; s < P.nsplit; s++) { M = max(M, partML[base + s].x); }
  var L = 0.0;
  for (var s = 0u; s < P.nsplit; s++) { let ml = partML[base + s]; L += ml.y * exp(ml.x - M); }
  for (var d = t; d < P.D; d += 64u) {
    var o = 0.0;
    for (var s = 0u; s < P.nsplit; s++) {
      o += partO[(base + s) * P.D + d] * exp(partML[base + s].x - M);
    }
    O[(r * P.H + qh) * P.D + d] = o / L;
  }
#if SCORES
  let slot = rows[r].w;
  if (t == 0u && slot != 0xffffffffu) { lse[slot * P.H + qh] = M + log(L); }
#endif
}
