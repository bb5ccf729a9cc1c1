// Log-probabilities next to sampling, one workgroup per sequence row: the log-softmax
// of the logits the sampler saw (divided by the temperature; greedy rows as they are,
// grammar-masked tokens excluded), for the token sample.wgsl drew and for the row's
// `n` largest (n <= TOPN, lowest index first on ties). Row (histOffset + b) of `lp`
// gets [logprob of the sampled token, TOPN ids, TOPN logprobs] (f32 as bits), so the
// host reads 41 words a token, never the vocabulary. Rows with samp.logprobs == 0 are
// skipped; samp.logprobs = 1 + n otherwise. Unused top slots hold id 0xffffffff.
// Top-n: each thread keeps a sorted list of its strided slice, then n rounds pop the
// best head across the workgroup.
struct Params { V: u32, histOffset: u32, }
#include sampling
@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> samp: array<Sampling>;
@group(0) @binding(2) var<storage, read> sampled: array<u32>;
@group(0) @binding(3) var<storage, read_write> lp: array<u32>;
@group(0) @binding(4) var<uniform> P: Params;

const WG = 256u;
const TOPN = 20u;
const STRIDE = 41u; // 1 + 2 * TOPN
// token_mask.wgsl writes MASKED; EMPTY sorts below it and marks a list's unused slots
const MASKED = -3.0e38;
const EMPTY = -3.4e38;
var<workgroup> redv: array<f32, WG>;
var<workgroup> redi: array<u32, WG>;
var<workgroup> wsamp: Sampling;
var<workgroup> wf: f32;

#include workgroup_reduce

// the logit as the sampler weighs it: scaled by 1/temperature, masked ones pinned at MASKED
fn scaled(x: f32, invT: f32) -> f32 {
  return select(x * invT, MASKED, x <= MASKED);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let b = wid.x;
  let base = b * P.V;
  if (t == 0u) { wsamp = samp[b]; }
  let sp = workgroupUniformLoad(&wsamp);
  if (sp.logprobs == 0u) { return; }
  let n = min(sp.logprobs - 1u, TOPN);
  let invT = select(1.0, 1.0 / sp.temperature, sp.temperature > 0.0);

  // this thread's slice: its max and its n best, sorted (earlier index first on ties)
  var tv: array<f32, TOPN>;
  var ti: array<u32, TOPN>;
  var cnt = 0u;
  var mx = EMPTY;
  for (var i = t; i < P.V; i += WG) {
    let y = scaled(logits[base + i], invT);
    mx = max(mx, y);
    if (n > 0u && (cnt < n || y > tv[n - 1u])) {
      var j = min(cnt, n - 1u);
      while (j > 0u && y > tv[j - 1u]) {
        tv[j] = tv[j - 1u];
        ti[j] = ti[j - 1u];
        j--;
      }
      tv[j] = y;
      ti[j] = i;
      cnt = min(cnt + 1u, n);
    }
  }
  let gmx = reduce(t, mx, true);
  var s = 0.0;
  for (var i = t; i < P.V; i += WG) { s += exp(scaled(logits[base + i], invT) - gmx); }
  let lse = gmx + log(reduce(t, s, false));
  let o = (P.histOffset + b) * STRIDE;
  if (t == 0u) {
    lp[o] = bitcast<u32>(scaled(logits[base + sampled[b]], invT) - lse);
  }

  // n rounds: the best head of all lists (lowest id on ties) is written and popped
  var h = 0u;
  for (var r = 0u; r < n; r++) {
    argmaxReduce(t, select(EMPTY, tv[min(h, TOPN - 1u)], h < cnt), select(0xffffffffu, ti[min(h, TOPN - 1u)], h < cnt));
    let id = redi[0];
    let v = redv[0];
    workgroupBarrier();
    if (h < cnt && ti[min(h, TOPN - 1u)] == id) { h++; }
    if (t == 0u) {
      lp[o + 1u + r] = id;
      lp[o + 1u + TOPN + r] = bitcast<u32>(v - lse);
    }
  }
  if (t == 0u) {
    for (var r = n; r < TOPN; r++) {
      lp[o + 1u + r] = 0xffffffffu;
      lp[o + 1u + TOPN + r] = 0u;
    }
  }
}
