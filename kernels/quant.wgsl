// Included by kernels whose weights are block-quantized (QUANT = q8_0 | q4_0 | q4_k |
// q6_k; not a kernel of its own). The row layout is src/model/quant.ts's: a row of K
// weights is u32 words, its blocks (Q8_0, Q4_0, Q6_K without their f16 d; Q4_K whole)
// and then the row's d values as f16 pairs. The including kernel defines
// `fn qw(b: u32, i: u32) -> u32`, word i of weight buffer b (b is a constant at every
// call, so the choice folds away). qload8(b, row, k8, K): weights 8 k8 .. 8 k8 + 7 of
// `row`, as f32, dequantized in registers.

fn qi8(u: u32, j: u32) -> f32 {
  return f32(bitcast<i32>(u << (24u - 8u * j)) >> 24u);
}
// f16 number i of the f16 pairs starting at word w
fn qhalf(b: u32, w: u32, i: u32) -> f32 {
  return unpack2x16float(qw(b, w + i / 2u))[i % 2u];
}

fn q8_0(b: u32, row: u32, k8: u32, K: u32) -> array<vec4<f32>, 2> {
  let nb = K / 32u;
  let r0 = row * (nb * 8u + (nb + 1u) / 2u);
  let blk = k8 / 4u;
  let w = r0 + blk * 8u + 2u * (k8 % 4u);
  let d = qhalf(b, r0 + nb * 8u, blk);
  let lo = qw(b, w);
  let hi = qw(b, w + 1u);
  return array<vec4<f32>, 2>(
    d * vec4<f32>(qi8(lo, 0u), qi8(lo, 1u), qi8(lo, 2u), qi8(lo, 3u)),
    d * vec4<f32>(qi8(hi, 0u), qi8(hi, 1u), qi8(hi, 2u), qi8(hi, 3u)));
}

fn q4_0(b: u32, row: u32, k8: u32, K: u32) -> array<vec4<f32>, 2> {
  let nb = K / 32u;
  let r0 = row * (nb * 4u + (nb + 1u) / 2u);
  let blk = k8 / 4u;
  let p = k8 % 4u;
  // weights 0..15 of a block are the low nibbles of its 16 bytes, 16..31 the high ones
  let w = r0 + blk * 4u + 2u * (p % 2u);
  let sh = 4u * (p / 2u);
  let d = qhalf(b, r0 + nb * 4u, blk);
  let lo = qw(b, w) >> sh;
  let hi = qw(b, w + 1u) >> sh;
  let m = vec4<u32>(0u, 8u, 16u, 24u);
  return array<vec4<f32>, 2>(
    d * (vec4<f32>((vec4<u32>(lo) >> m) & vec4<u32>(15u)) - 8.0),
    d * (vec4<f32>((vec4<u32>(hi) >> m) & vec4<u32>(15u)) - 8.0));
}

fn q4_k(b: u32, row: u32, k8: u32, K: u32) -> array<vec4<f32>, 2> {
  let r0 = row * (K / 256u) * 36u;
  let blk = r0 + (k8 / 32u) * 36u;
  let j = k8 % 32u;
  let s = j / 4u; // sub-block of 32 weights
  let dm = unpack2x16float(qw(b, blk));
  // 6-bit scale and min of sub-block s (ggml get_scale_min_k4) from scales[12]
  let s0 = qw(b, blk + 1u);
  let s1 = qw(b, blk + 2u);
  let s2 = qw(b, blk + 3u);
  var sc: u32;
  var mn: u32;
  if (s < 4u) {
    sc = (s0 >> (8u * s)) & 63u;
    mn = (s1 >> (8u * s)) & 63u;
  } else {
    let hiByte = (s2 >> (8u * (s - 4u))) & 255u; // scales[s + 4]
    sc = (hiByte & 15u) | (((s0 >> (8u * (s - 4u) + 6u)) & 3u) << 4u);
    mn = (hiByte >> 4u) | (((s1 >> (8u * (s - 4u) + 6u)) & 3u) << 4u);
  }
  let d = dm.x * f32(sc);
  let m = dm.y * f32(mn);
  // qs chunk s / 2 holds sub-blocks s (low nibbles) and s + 1 (high)
  let w = blk + 4u + 8u * (s / 2u) + 2u * (j % 4u);
  let sh = 4u * (s % 2u);
  let lo = qw(b, w) >> sh;
  let hi = qw(b, w + 1u) >> sh;
  let mv = vec4<u32>(0u, 8u, 16u, 24u);
  return array<vec4<f32>, 2>(
    d * vec4<f32>((vec4<u32>(lo) >> mv) & vec4<u32>(15u)) - m,
    d * vec4<f32>((vec4<u32>(hi) >> mv) & vec4<u32>(15u)) - m);
}

fn q6_k(b: u32, row: u32, k8: u32, K: u32) -> array<vec4<f32>, 2> {
  let nb = K / 256u;
  let r0 = row * (nb * 52u + (nb + 1u) / 2u);
  let sb = k8 / 32u;
  let blk = r0 + sb * 52u;
  let d = qhalf(b, r0 + nb * 52u, sb);
  let wt = 8u * (k8 % 32u); // first weight in the super-block
  let n = wt / 128u; // half
  let q = (wt % 128u) / 32u; // quadrant: ql half and nibble, qh bit pair, scale
  let l = wt % 32u;
  let wl = blk + (64u * n + 32u * (q % 2u) + l) / 4u;
  let wh = blk + 32u + (32u * n + l) / 4u;
  let si = 8u * n + l / 16u + 2u * q;
  let scw = qw(b, blk + 48u + si / 4u);
  let scale = d * qi8(scw, si % 4u);
  let shl = 4u * (q / 2u);
  let shh = 2u * q;
  let mv = vec4<u32>(0u, 8u, 16u, 24u);
  let l0 = (vec4<u32>(qw(b, wl)) >> (mv + shl)) & vec4<u32>(15u);
  let l1 = (vec4<u32>(qw(b, wl + 1u)) >> (mv + shl)) & vec4<u32>(15u);
  let h0 = (vec4<u32>(qw(b, wh)) >> (mv + shh)) & vec4<u32>(3u);
  let h1 = (vec4<u32>(qw(b, wh + 1u)) >> (mv + shh)) & vec4<u32>(3u);
  return array<vec4<f32>, 2>(
    scale * (vec4<f32>(l0 | (h0 << vec4<u32>(4u))) - 32.0),
    scale * (vec4<f32>(l1 | (h1 << vec4<u32>(4u))) - 32.0));
}

fn qload8(b: u32, row: u32, k8: u32, K: u32) -> array<vec4<f32>, 2> {
  return {{QUANT}}(b, row, k8, K);
}
