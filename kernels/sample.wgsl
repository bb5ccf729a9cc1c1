// Token sampling on the GPU, one workgroup per sequence, so decode never needs the
// logits on the host. temperature == 0: argmax (lowest index on ties). Otherwise the
// kept set is {x >= thr}: thr found by bisection for top-k (k-th largest logit) and
// then top-p (smallest head of the distribution holding top_p of the mass); one draw
// u ~ U[0,1) from a counter-based hash of (seed, counter) picks a token by the
// cumulative mass in index order. Ties at a threshold may keep a few extra tokens.
// Logits of -3e38 (token_mask.wgsl) are never kept.
struct Params { V: u32, M: u32, histOffset: u32, }
#include sampling
@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> samp: array<Sampling>;
@group(0) @binding(2) var<storage, read_write> outTok: array<u32>;
@group(0) @binding(3) var<storage, read_write> hist: array<u32>;
@group(0) @binding(4) var<uniform> P: Params;

const WG = 256u;
const ITERS = 40u;
var<workgroup> redv: array<f32, WG>;
var<workgroup> redi: array<u32, WG>;
var<workgroup> wsamp: Sampling;
var<workgroup> wbest: vec2<f32>; // (max logit, argmax as f32 bits)
var<workgroup> wf: f32;
var<workgroup> wpick: u32;

fn pcg(v: u32) -> u32 {
  let s = v * 747796405u + 2891336453u;
  let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
  return (w >> 22u) ^ w;
}

#include workgroup_reduce

// count (as f32) or mass of logits >= thr
fn massAbove(t: u32, base: u32, thr: f32, mx: f32, invT: f32, count: bool) -> f32 {
  var s = 0.0;
  for (var i = t; i < P.V; i += WG) {
    let x = logits[base + i];
    if (x >= thr) { s += select(exp((x - mx) * invT), 1.0, count); }
  }
  return reduce(t, s, false);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let b = wid.x;
  let base = b * P.V;
  if (t == 0u) { wsamp = samp[b]; }
  let sp = workgroupUniformLoad(&wsamp);

  // argmax, first index on ties
  var bv = -3.0e38;
  var bi = 0u;
  for (var i = t; i < P.V; i += WG) {
    let x = logits[base + i];
    if (x > bv) { bv = x; bi = i; }
  }
  argmaxReduce(t, bv, bi);
  let mx = redv[0];
  var pick = redi[0];

  if (sp.temperature > 0.0 && sp.topK != 1u) {
    let invT = 1.0 / sp.temperature;
    // smallest logit, the lower end of every bisection; a grammar's masked tokens
    // (token_mask.wgsl: -3e38) stay out of it, or the bisections lose their resolution
    var mn = 3.0e38;
    for (var i = t; i < P.V; i += WG) {
      let x = logits[base + i];
      if (x > -3.0e38) { mn = min(mn, x); }
    }
    workgroupBarrier();
    redv[t] = mn;
    workgroupBarrier();
    for (var k = WG / 2u; k > 0u; k >>= 1u) {
      if (t < k) { redv[t] = min(redv[t], redv[t + k]); }
      workgroupBarrier();
    }
    if (t == 0u) { wf = redv[0]; }
    var thr = workgroupUniformLoad(&wf);
    if (sp.topK > 1u && sp.topK < P.V) {
      var lo = thr;
      var hi = mx;
      for (var it = 0u; it < ITERS; it++) {
        let mid = 0.5 * (lo + hi);
        if (massAbove(t, base, mid, mx, invT, true) >= f32(sp.topK)) { lo = mid; } else { hi = mid; }
      }
      thr = lo;
    }
    var mass = massAbove(t, base, thr, mx, invT, false);
    if (sp.topP < 1.0) {
      let goal = sp.topP * mass;
      var lo = thr;
      var hi = mx;
      for (var it = 0u; it < ITERS; it++) {
        let mid = 0.5 * (lo + hi);
        if (massAbove(t, base, mid, mx, invT, false) >= goal) { lo = mid; } else { hi = mid; }
      }
      thr = lo;
      mass = massAbove(t, base, thr, mx, invT, false);
    }
    let u = f32(pcg(sp.seed ^ pcg(sp.counter)) >> 8u) / 16777216.0 * mass;
    // contiguous chunk per thread: chunk sums, then the owning thread walks its chunk
    let C = (P.V + WG - 1u) / WG;
    var cs = 0.0;
    for (var i = t * C; i < min(P.V, (t + 1u) * C); i++) {
      let x = logits[base + i];
      if (x >= thr) { cs += exp((x - mx) * invT); }
    }
    workgroupBarrier();
    redv[t] = cs;
    workgroupBarrier();
    if (t == 0u) {
      var acc = 0.0;
      var chosen = pick;  // argmax if rounding leaves u beyond the total
      for (var c = 0u; c < WG; c++) {
        let next = acc + redv[c];
        if (u < next && redv[c] > 0.0) {
          var a = acc;
          for (var i = c * C; i < min(P.V, (c + 1u) * C); i++) {
            let x = logits[base + i];
            if (x >= thr) {
              a += exp((x - mx) * invT);
              chosen = i;
              if (u < a) { break; }
            }
          }
          break;
        }
        acc = next;
      }
      wpick = chosen;
    }
    pick = workgroupUniformLoad(&wpick);
  }
  if (t == 0u) {
    outTok[b] = pick;
    hist[P.histOffset + b] = pick;
  }
}
