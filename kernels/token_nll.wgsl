// Teacher-forced scoring for perplexity: row r's negative log-likelihood of its
// target token, nll[r] = logsumexp(logits[r, :]) - logits[r, target[r]], accumulated
// in f32 with a max shift. One workgroup per row; a target of 0xffffffff writes 0.
struct Params { V: u32, M: u32, }
@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> targets: array<u32>;
@group(0) @binding(2) var<storage, read_write> nll: array<f32>;
@group(0) @binding(3) var<uniform> P: Params;

const WG = 256u;
var<workgroup> red: array<f32, WG>;

fn reduce(t: u32, v: f32, isMax: bool) -> f32 {
  red[t] = v;
  workgroupBarrier();
  for (var k = WG / 2u; k > 0u; k >>= 1u) {
    if (t < k) { red[t] = select(red[t] + red[t + k], max(red[t], red[t + k]), isMax); }
    workgroupBarrier();
  }
  let out = red[0];
  workgroupBarrier();
  return out;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let r = wid.x + wid.y * 65535u;
  if (r >= P.M) { return; }
  let base = r * P.V;
  var m = -3.0e38;
  for (var i = t; i < P.V; i += WG) { m = max(m, logits[base + i]); }
  m = reduce(t, m, true);
  var s = 0.0;
  for (var i = t; i < P.V; i += WG) { s += exp(logits[base + i] - m); }
  s = reduce(t, s, false);
  if (t == 0u) {
    let tgt = targets[r];
    nll[r] = select(m + log(s) - logits[base + min(tgt, P.V - 1u)], 0.0, tgt == 0xffffffffu);
  }
}
