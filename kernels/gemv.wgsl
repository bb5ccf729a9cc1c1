// Decode GEMV: Y[m, colOff + n] (+)= sum_k X[m, k] * W[n, k] (+ B[colOff + n]).
// W: f16 [N, K] (native f16 or packed u32 pairs), X: f32 [M, K], K % 8 == 0.
// One workgroup: ROWS output rows x BATCH activation rows; each thread strides K in
// 16-byte weight loads, so W is read once per BATCH activation rows. f32 accumulators.
struct Params { K: u32, N: u32, M: u32, ldy: u32, colOff: u32, }

#if F16
@group(0) @binding(0) var<storage, read> W: array<vec4<f16>>;
#else
@group(0) @binding(0) var<storage, read> W: array<vec4<u32>>;
#endif
@group(0) @binding(1) var<storage, read> X: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
#if BIAS
@group(0) @binding(3) var<storage, read> B: array<f32>;
@group(0) @binding(4) var<uniform> P: Params;
#else
@group(0) @binding(3) var<uniform> P: Params;
#endif

const WG = {{WG}}u;
const ROWS = {{ROWS}}u;
const BATCH = {{BATCH}}u;
const RB = ROWS * BATCH;

#if SUBGROUPS
// one partial per (output, subgroup); subgroups are at least 4 wide
var<workgroup> red: array<f32, RB * (WG / 4u)>;
#else
var<workgroup> red: array<f32, RB * WG>;
#endif

// 8 consecutive weights starting at element 8*i
fn load8(i: u32) -> array<vec4<f32>, 2> {
#if F16
  return array<vec4<f32>, 2>(vec4<f32>(W[2u * i]), vec4<f32>(W[2u * i + 1u]));
#else
  let u = W[i];
  return array<vec4<f32>, 2>(
    vec4<f32>(unpack2x16float(u.x), unpack2x16float(u.y)),
    vec4<f32>(unpack2x16float(u.z), unpack2x16float(u.w)));
#endif
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32
#if SUBGROUPS
  , @builtin(subgroup_size) sgs: u32, @builtin(subgroup_invocation_id) sgi: u32
#endif
) {
  let n0 = wid.x * ROWS;
  let m0 = wid.y * BATCH;
  let K8 = P.K / 8u;
  var acc: array<f32, RB>;
  for (var k8 = t; k8 < K8; k8 += WG) {
    var xs: array<array<vec4<f32>, 2>, BATCH>;
    for (var b = 0u; b < BATCH; b++) {
      let m = min(m0 + b, P.M - 1u);
      let xi = m * (P.K / 4u) + 2u * k8;
      xs[b] = array<vec4<f32>, 2>(X[xi], X[xi + 1u]);
    }
    for (var r = 0u; r < ROWS; r++) {
      let n = min(n0 + r, P.N - 1u);
      let w = load8(n * K8 + k8);
      for (var b = 0u; b < BATCH; b++) {
        acc[r * BATCH + b] += dot(w[0], xs[b][0]) + dot(w[1], xs[b][1]);
      }
    }
  }
#if SUBGROUPS
  let nsg = WG / sgs;
  for (var j = 0u; j < RB; j++) {
    let s = subgroupAdd(acc[j]);
    if (sgi == 0u) { red[j * (WG / 4u) + t / sgs] = s; }
  }
  workgroupBarrier();
  if (t < RB) {
    var s = 0.0;
    for (var i = 0u; i < nsg; i++) { s += red[t * (WG / 4u) + i]; }
    store(t, n0, m0, s);
  }
#else
  for (var j = 0u; j < RB; j++) { red[j * WG + t] = acc[j]; }
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (t < s) {
      for (var j = 0u; j < RB; j++) { red[j * WG + t] += red[j * WG + t + s]; }
    }
    workgroupBarrier();
  }
  if (t < RB) { store(t, n0, m0, red[t * WG]); }
#endif
}

fn store(j: u32, n0: u32, m0: u32, v: f32) {
  let n = n0 + j / BATCH;
  let m = m0 + j % BATCH;
  if (n >= P.N || m >= P.M) { return; }
  let yi = m * P.ldy + P.colOff + n;
  var out = v;
#if BIAS
  out += B[P.colOff + n];
#endif
#if RESIDUAL
  out += Y[yi];
#endif
  Y[yi] = out;
}
