// On-load quantization: f16 weight rows (packed pairs, K % 32 == 0; Q4_K: K % 256 == 0)
// to the GPU row layout of kernels/quant.wgsl (QUANT = q8_0 | q4_0 | q4_k), by the
// algorithms of src/model/quant.ts `quantize` (its CPU reference). One thread per two
// blocks (q8_0, q4_0: their two f16 d share a word) or per 256-block (q4_k).
struct Params { K: u32, rows: u32, }
// rows past the 65535 workgroups a grid dimension holds (a vocabulary's) continue in z
const ROWS_Y = 65535u;
@group(0) @binding(0) var<storage, read> W: array<u32>;
@group(0) @binding(1) var<storage, read_write> Q: array<u32>;
@group(0) @binding(2) var<uniform> P: Params;

// the f32 value an f16 store keeps
fn asF16(x: f32) -> f32 { return unpack2x16float(pack2x16float(vec2<f32>(x, 0.0))).x; }

// weights 32 b .. 32 b + 31 of `row`
fn block32(row: u32, b: u32) -> array<f32, 32> {
  var x: array<f32, 32>;
  let w0 = row * (P.K / 2u) + 16u * b;
  for (var i = 0u; i < 16u; i++) {
    let v = unpack2x16float(W[w0 + i]);
    x[2u * i] = v.x;
    x[2u * i + 1u] = v.y;
  }
  return x;
}

#if !Q4K
// one 32-block of a Q8_0 / Q4_0 row into its body words; returns its d
fn legacy(row: u32, b: u32, rw: u32) -> f32 {
  let x = block32(row, b);
  let o = row * rw + b * {{BODY}}u;
#if Q8
  var amax = 0.0;
  for (var i = 0u; i < 32u; i++) { amax = max(amax, abs(x[i])); }
  let d = amax / 127.0;
  let id = select(0.0, 1.0 / d, d != 0.0);
  for (var w = 0u; w < 8u; w++) {
    var word = 0u;
    for (var j = 0u; j < 4u; j++) { word |= (u32(i32(round(x[4u * w + j] * id))) & 255u) << (8u * j); }
    Q[o + w] = word;
  }
  return d;
#else
  // ggml's Q4_0: the value of largest magnitude maps to -8
  var mx = 0.0;
  for (var i = 0u; i < 32u; i++) { if (abs(x[i]) > abs(mx)) { mx = x[i]; } }
  let d = mx / -8.0;
  let id = select(0.0, 1.0 / d, d != 0.0);
  for (var w = 0u; w < 4u; w++) {
    var word = 0u;
    for (var j = 0u; j < 4u; j++) {
      let l = 4u * w + j;
      let lo = min(15u, u32(x[l] * id + 8.5));
      let hi = min(15u, u32(x[l + 16u] * id + 8.5));
      word |= (lo | (hi << 4u)) << (8u * j);
    }
    Q[o + w] = word;
  }
  return d;
#endif
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let nb = P.K / 32u;
  let pairs = (nb + 1u) / 2u;
  let row = gid.y + gid.z * ROWS_Y;
  let p = gid.x;
  if (row >= P.rows || p >= pairs) { return; }
  let rw = nb * {{BODY}}u + pairs;
  let d0 = legacy(row, 2u * p, rw);
  var d1 = 0.0;
  if (2u * p + 1u < nb) { d1 = legacy(row, 2u * p + 1u, rw); }
  Q[row * rw + nb * {{BODY}}u + p] = pack2x16float(vec2<f32>(d0, d1));
}
#else
// Q4_K: per 32-weight sub-block a scale (max - min) / 15 and a min <= 0, both as 6-bit
// multiples of the block's f16 d and dmin
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let nb = P.K / 256u;
  let row = gid.y + gid.z * ROWS_Y;
  let sb = gid.x;
  if (row >= P.rows || sb >= nb) { return; }
  var sc: array<f32, 8>;
  var mn: array<f32, 8>;
  var smax = 0.0;
  var mmax = 0.0;
  for (var s = 0u; s < 8u; s++) {
    let x = block32(row, 8u * sb + s);
    var lo = 0.0;
    var hi = x[0];
    for (var i = 0u; i < 32u; i++) { lo = min(lo, x[i]); hi = max(hi, x[i]); }
    sc[s] = (hi - lo) / 15.0;
    mn[s] = -lo;
    smax = max(smax, sc[s]);
    mmax = max(mmax, mn[s]);
  }
  let d = asF16(smax / 63.0);
  let dmin = asF16(mmax / 63.0);
  var ls: array<u32, 8>;
  var lm: array<u32, 8>;
  for (var s = 0u; s < 8u; s++) {
    ls[s] = select(0u, u32(clamp(round(sc[s] / d), 0.0, 63.0)), d != 0.0);
    lm[s] = select(0u, u32(clamp(round(mn[s] / dmin), 0.0, 63.0)), dmin != 0.0);
  }
  // scales[12] as ggml packs them (see get_scale_min_k4)
  var bytes: array<u32, 12>;
  for (var j = 0u; j < 4u; j++) {
    bytes[j] = ls[j] | ((ls[j + 4u] >> 4u) << 6u);
    bytes[j + 4u] = lm[j] | ((lm[j + 4u] >> 4u) << 6u);
    bytes[j + 8u] = (ls[j + 4u] & 15u) | ((lm[j + 4u] & 15u) << 4u);
  }
  let o = row * nb * 36u + sb * 36u;
  Q[o] = pack2x16float(vec2<f32>(d, dmin));
  for (var w = 0u; w < 3u; w++) { Q[o + 1u + w] = bytes[4u * w] | (bytes[4u * w + 1u] << 8u) | (bytes[4u * w + 2u] << 16u) | (bytes[4u * w + 3u] << 24u); }
  // qs: chunk c holds sub-block 2c in its low nibbles and 2c + 1 in its high ones
  for (var c = 0u; c < 4u; c++) {
    let xl = block32(row, 8u * sb + 2u * c);
    let xh = block32(row, 8u * sb + 2u * c + 1u);
    let stl = d * f32(ls[2u * c]);
    let sth = d * f32(ls[2u * c + 1u]);
    let ml = dmin * f32(lm[2u * c]);
    let mh = dmin * f32(lm[2u * c + 1u]);
    for (var w = 0u; w < 8u; w++) {
      var word = 0u;
      for (var j = 0u; j < 4u; j++) {
        let l = 4u * w + j;
        let ql = select(0u, u32(clamp(round((xl[l] + ml) / stl), 0.0, 15.0)), stl != 0.0);
        let qh = select(0u, u32(clamp(round((xh[l] + mh) / sth), 0.0, 15.0)), sth != 0.0);
        word |= (ql | (qh << 4u)) << (8u * j);
      }
      Q[o + 4u + 8u * c + w] = word;
    }
  }
}
#endif
