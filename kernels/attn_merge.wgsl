// Merge split-K attention partials: O = sum_s exp(m_s - M) o_s / sum_s exp(m_s - M) l_s.
// Empty splits carry m = -3e38, l = 0 and contribute nothing. SCORES: rows with a
// score slot also get their log-sum-exp, M + log(L), for kv_scores.
// One workgroup per (query head, row): (M, L) folded over the splits by all threads and
// a tree; then the splits are dealt to WG / (D / 4) thread groups, each thread summing
// one vec4 of the output over its splits, and the groups summed at the end.
struct Params { H: u32, D: u32, nsplit: u32, }
@group(0) @binding(#) var<storage, read> partML: array<vec2<f32>>;
@group(0) @binding(#) var<storage, read> partO: array<vec4<f32>>;
@group(0) @binding(#) var<storage, read_write> O: array<vec4<f32>>;
#if SCORES
@group(0) @binding(#) var<storage, read> rows: array<vec4<u32>>;
@group(0) @binding(#) var<storage, read_write> lse: array<f32>;
#endif
@group(0) @binding(#) var<uniform> P: Params;

const WG = 128u;
const NEG = -3.0e38;

var<workgroup> rm: array<f32, WG>;
var<workgroup> rl: array<f32, WG>;
var<workgroup> ro: array<vec4<f32>, WG>;

@compute @workgroup_size(128)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let qh = wid.x;
  let r = wid.y;
  let base = (r * P.H + qh) * P.nsplit;
  var m = NEG;
  var l = 0.0;
  for (var s = t; s < P.nsplit; s += WG) {
    let ml = partML[base + s];
    let mn = max(m, ml.x);
    l = l * exp(m - mn) + ml.y * exp(ml.x - mn);
    m = mn;
  }
  rm[t] = m;
  rl[t] = l;
  workgroupBarrier();
  for (var st = WG / 2u; st > 0u; st >>= 1u) {
    if (t < st) {
      let m2 = rm[t + st];
      let mn = max(m, m2);
      l = l * exp(m - mn) + rl[t + st] * exp(m2 - mn);
      m = mn;
      rm[t] = m;
      rl[t] = l;
    }
    workgroupBarrier();
  }
  let M = rm[0];
  let L = rl[0];
  let D4 = P.D / 4u;
  let groups = max(1u, WG / D4);
  let grp = t / D4;
  let c = t % D4;
  var o = vec4<f32>(0.0);
  if (grp < groups) {
    for (var s = grp; s < P.nsplit; s += groups) {
      o += partO[(base + s) * D4 + c] * exp(partML[base + s].x - M);
    }
  }
  ro[t] = o;
  workgroupBarrier();
  for (var d = t; d < D4; d += WG) {
    var sum = vec4<f32>(0.0);
    if (d < WG) {
      for (var g = 0u; g < groups; g++) { sum += ro[g * D4 + d]; }
    } else {
      for (var s = 0u; s < P.nsplit; s++) { sum += partO[(base + s) * D4 + d] * exp(partML[base + s].x - M); }
    }
    O[(r * P.H + qh) * D4 + d] = sum / L;
  }
#if SCORES
  let slot = rows[r].w;
  if (t == 0u && slot != 0xffffffffu) { lse[slot * P.H + qh] = M + log(L); }
#endif
}
