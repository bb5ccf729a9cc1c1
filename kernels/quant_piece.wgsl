// Included by gemv.wgsl with PIECE (not a kernel of its own): block-quantized rows
// (src/model/quant.ts's layout) read a piece at a time, a lane's unit of work. A piece
// is one to four aligned 16-byte loads of packed weights (and the block's scale word)
// holding runs of 16 weights, each run of the form s q - m with q small unsigned
// integers and one (s, m) per run; run j meets x[xbase(p) + j RUN + 0..15]. So a lane
// decodes its scales once per 16 weights, converts each q once, and its loads are
// wide and contiguous with its neighbours' (consecutive lanes take consecutive pieces).
// Rows must be whole 16-byte words (src/model/quant-gemv.ts pieceFits: K % 256 == 0 will do).
// The including kernel defines `fn qv(b: u32, i: u32) -> vec4<u32>`, 16-byte word i of
// weight buffer b (b is a constant at every call, so the choice folds away), and P.K.
//
// Per format: `FMT_xbase(p)`, the piece's first x; `FMT_load(b, row, p)`, its loads and
// scales; `FMT_dot(w, x, sx)`, sum over its runs of s dot(q, x) - m sum(x) given the
// run sums sx; `FMT_dot8(w, xq, xd)`, the same with x as 8-bit integers, 16 a run (xq),
// and each run's (d, d sum(xq)) in xd: s d dot4(q, xq) - m d sum(xq).

// small unsigned integers (< 2^23) as f32: a conversion, or (QMAGIC) their bits under
// the exponent of 2^23 minus 2^23 (two full-rate ALU operations, where a conversion
// issues at a fraction of the FMA rate; both exact)
const MAGIC = 0x4B000000u;
fn qf(v: vec4<u32>) -> vec4<f32> {
#if QMAGIC
  return bitcast<vec4<f32>>(v | vec4<u32>(MAGIC)) - vec4<f32>(8388608.0);
#else
  return vec4<f32>(v);
#endif
}

// the four bytes of w shifted right by sh, masked
fn qbytes(w: u32, sh: u32, mask: u32) -> vec4<u32> {
  return (vec4<u32>(w) >> vec4<u32>(sh, sh + 8u, sh + 16u, sh + 24u)) & vec4<u32>(mask);
}

// The low (nibA) and high (nibB) nibbles of the four bytes of w. With QMAGIC each
// nibble is masked where it sits (bytes 0-2 of w, or of w >> 12 for the top ones, so
// that it stays inside the 23-bit mantissa), one AND-OR per weight with no shift: it
// reads as n 2^b for its bit position b, and qrun undoes the 2^b per vector lane after
// summing (scaling by a power of two is exact: the sums are the conversion's, bit for bit).
fn nibA(w: u32) -> vec4<f32> {
#if QMAGIC
  return bitcast<vec4<f32>>((vec4<u32>(w, w, w, w >> 12u) & vec4<u32>(0xFu, 0xF00u, 0xF0000u, 0xF000u)) | vec4<u32>(MAGIC)) - vec4<f32>(8388608.0);
#else
  return qf(qbytes(w, 0u, 15u));
#endif
}
fn nibB(w: u32) -> vec4<f32> {
#if QMAGIC
  return bitcast<vec4<f32>>((vec4<u32>(w, w, w >> 12u, w >> 12u) & vec4<u32>(0xF0u, 0xF000u, 0xF00u, 0xF0000u)) | vec4<u32>(MAGIC)) - vec4<f32>(8388608.0);
#else
  return qf(qbytes(w, 4u, 15u));
#endif
}
// what nibA / nibB's lanes are multiplied by
#if QMAGIC
const NIB_A = vec4<f32>(1.0, 1.0 / 256.0, 1.0 / 65536.0, 1.0 / 4096.0);
const NIB_B = vec4<f32>(1.0 / 16.0, 1.0 / 4096.0, 1.0 / 256.0, 1.0 / 65536.0);
#else
const NIB_A = vec4<f32>(1.0);
const NIB_B = vec4<f32>(1.0);
#endif
const ONES = vec4<f32>(1.0);

// sum_i q_i x_i over one run of 16, q as f32 (times lane scales `sc`): each vector lane
// sums its own 4 products first, so one dot with sc at the end undoes their scales
fn qrun(q0: vec4<f32>, q1: vec4<f32>, q2: vec4<f32>, q3: vec4<f32>, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>, sc: vec4<f32>) -> f32 {
  return dot(q0 * x0 + q1 * x1 + q2 * x2 + q3 * x3, sc);
}

// f16 number i of the f16 pairs starting at u32 word w
fn qdh(b: u32, w: u32, i: u32) -> f32 {
  let j = w + i / 2u;
  return unpack2x16float(qv(b, j / 4u)[j % 4u])[i % 2u];
}

// --- Q4_K: a super-block is 9 words of 16 bytes: d|dmin with the 12 scale bytes, then
// 8 of qs. Piece p = 8 sb + 2 c + h is qs bytes 16 h .. 16 h + 15 of chunk c: their low
// nibbles are weights 64 c + 16 h + i of the super-block (sub-block 2 c), their high
// nibbles the same + 32 (sub-block 2 c + 1).
struct q4_k_p { q: vec4<u32>, s: vec2<f32>, m: vec2<f32>, }

fn q4_k_xbase(p: u32) -> u32 {
  return 256u * (p / 8u) + 64u * ((p % 8u) / 2u) + 16u * (p % 2u);
}

fn q4_k_load(b: u32, row: u32, p: u32) -> q4_k_p {
  let blk = (row * (P.K / 256u) + p / 8u) * 9u;
  let hd = qv(b, blk); // d|dmin, scale bytes 0-3, 4-7, 8-11
  let q = qv(b, blk + 1u + p % 8u);
  // 6-bit scale and min of sub-blocks s = 2c, 2c + 1 (ggml get_scale_min_k4): s < 4 in
  // the low 6 bits of bytes s and s + 4; s >= 4 in the nibbles of byte s + 4 with the
  // top 2 bits of bytes s - 4 and s. Every one of those bytes sits at s % 4 in its word.
  let c = (p % 8u) / 2u;
  let sh = vec2<u32>(16u * (c % 2u)) + vec2<u32>(0u, 8u);
  let a = vec2<u32>(hd.y) >> sh;
  let e = vec2<u32>(hd.z) >> sh;
  let hi = vec2<u32>(hd.w) >> sh;
  let top = vec2<u32>(4u);
  let sc = select((hi & vec2<u32>(15u)) | (((a >> vec2<u32>(6u)) & vec2<u32>(3u)) << top), a & vec2<u32>(63u), c < 2u);
  let mn = select(((hi >> top) & vec2<u32>(15u)) | (((e >> vec2<u32>(6u)) & vec2<u32>(3u)) << top), e & vec2<u32>(63u), c < 2u);
  let dm = unpack2x16float(hd.x);
  return q4_k_p(q, dm.x * vec2<f32>(sc), dm.y * vec2<f32>(mn));
}

fn q4_k_dot(w: q4_k_p, x: array<vec4<f32>, 8>, sx: vec4<f32>) -> f32 {
  let d0 = qrun(nibA(w.q.x), nibA(w.q.y), nibA(w.q.z), nibA(w.q.w), x[0], x[1], x[2], x[3], NIB_A);
  let d1 = qrun(nibB(w.q.x), nibB(w.q.y), nibB(w.q.z), nibB(w.q.w), x[4], x[5], x[6], x[7], NIB_B);
  return w.s.x * d0 - w.m.x * sx.x + w.s.y * d1 - w.m.y * sx.y;
}

// --- Q6_K: a super-block is 13 words of 16 bytes: ql (8), qh (4), the 16 i8 scales (1);
// the row's d values follow its blocks. Piece p = 4 sb + 2 n + h covers l = 16 h .. 16 h
// + 15 of half n: ql[64 n + l] (low nibble: weight 128 n + l, high: + 64), ql[64 n + 32
// + l] (+ 32, + 96) and qh[32 n + l] (bit pair k for run k); run k (weights 128 n + l
// + 32 k) has scale byte 8 n + h + 2 k. w = d sc (q - 32).
struct q6_k_p { l0: vec4<u32>, l1: vec4<u32>, h: vec4<u32>, s: vec4<f32>, }

fn q6_k_xbase(p: u32) -> u32 {
  return 256u * (p / 4u) + 128u * ((p % 4u) / 2u) + 16u * (p % 2u);
}

fn q6_k_load(b: u32, row: u32, p: u32) -> q6_k_p {
  let nb = P.K / 256u;
  let r0 = row * (nb * 52u + (nb + 1u) / 2u); // the row's first word (a multiple of 4 here)
  let sb = p / 4u;
  let n = (p % 4u) / 2u;
  let h = p % 2u;
  let blk = r0 / 4u + sb * 13u;
  let sc = qv(b, blk + 12u);
  let wa = select(sc.x, sc.z, n == 1u); // scale bytes 8n .. 8n + 3: runs 0 (byte h) and 1 (h + 2)
  let wb = select(sc.y, sc.w, n == 1u); // 8n + 4 .. 8n + 7: runs 2 and 3
  let up = vec4<u32>(24u - 8u * h, 8u - 8u * h, 24u - 8u * h, 8u - 8u * h);
  let s8 = bitcast<vec4<i32>>(vec4<u32>(wa, wa, wb, wb) << up) >> vec4<u32>(24u);
  let d = qdh(b, r0 + nb * 52u, sb);
  return q6_k_p(qv(b, blk + 4u * n + h), qv(b, blk + 4u * n + 2u + h), qv(b, blk + 8u + 2u * n + h), d * vec4<f32>(s8));
}

// run k, word i: the low (k < 2) or high nibbles of ql half k % 2, with qh's bit pair k on top
fn q6_k_q(w: q6_k_p, k: u32, i: u32) -> vec4<u32> {
  let l = select(w.l0[i], w.l1[i], k % 2u == 1u);
  return qbytes(l, 4u * (k / 2u), 15u) | (qbytes(w.h[i], 2u * k, 3u) << vec4<u32>(4u));
}

fn q6_k_dot(w: q6_k_p, x: array<vec4<f32>, 16>, sx: vec4<f32>) -> f32 {
  var d = vec4<f32>(0.0);
#unroll k 4
  d[{{k}}] = qrun(qf(q6_k_q(w, {{k}}u, 0u)), qf(q6_k_q(w, {{k}}u, 1u)), qf(q6_k_q(w, {{k}}u, 2u)), qf(q6_k_q(w, {{k}}u, 3u)), x[4 * {{k}}], x[4 * {{k}} + 1], x[4 * {{k}} + 2], x[4 * {{k}} + 3], ONES);
#endunroll
  return dot(w.s, d - 32.0 * sx);
}

// --- Q8_0: a block is 2 words of 16 bytes (32 i8), the row's d values follow. Piece p =
// block p; run j = bytes 16 j .. 16 j + 15. w = d q.
struct q8_0_p { q0: vec4<u32>, q1: vec4<u32>, d: f32, }

fn q8_0_xbase(p: u32) -> u32 {
  return 32u * p;
}

fn q8_0_load(b: u32, row: u32, p: u32) -> q8_0_p {
  let nb = P.K / 32u;
  let r0 = row * (nb * 8u + (nb + 1u) / 2u);
  let i = r0 / 4u + 2u * p;
  return q8_0_p(qv(b, i), qv(b, i + 1u), qdh(b, r0 + nb * 8u, p));
}

// the four i8 of w as f32 (exact either way): flipping each top bit gives i8 + 128
fn q8_0_f(w: u32) -> vec4<f32> {
  let u = qbytes(w ^ 0x80808080u, 0u, 255u);
#if QMAGIC
  return bitcast<vec4<f32>>(u | vec4<u32>(0x4B000000u)) - vec4<f32>(8388736.0);
#else
  return vec4<f32>(vec4<i32>(u) - vec4<i32>(128));
#endif
}

fn q8_0_dot(w: q8_0_p, x: array<vec4<f32>, 8>, sx: vec4<f32>) -> f32 {
  let d0 = qrun(q8_0_f(w.q0.x), q8_0_f(w.q0.y), q8_0_f(w.q0.z), q8_0_f(w.q0.w), x[0], x[1], x[2], x[3], ONES);
  let d1 = qrun(q8_0_f(w.q1.x), q8_0_f(w.q1.y), q8_0_f(w.q1.z), q8_0_f(w.q1.w), x[4], x[5], x[6], x[7], ONES);
  return w.d * (d0 + d1);
}

// --- Q4_0: a block is one word of 16 bytes, the row's d values follow. Piece p = block p:
// low nibbles are weights 0..15 (run 0), high nibbles 16..31 (run 1). w = d q - 8 d.
struct q4_0_p { q: vec4<u32>, d: f32, }

fn q4_0_xbase(p: u32) -> u32 {
  return 32u * p;
}

fn q4_0_load(b: u32, row: u32, p: u32) -> q4_0_p {
  let nb = P.K / 32u;
  let r0 = row * (nb * 4u + (nb + 1u) / 2u);
  return q4_0_p(qv(b, r0 / 4u + p), qdh(b, r0 + nb * 4u, p));
}

fn q4_0_dot(w: q4_0_p, x: array<vec4<f32>, 8>, sx: vec4<f32>) -> f32 {
  let d0 = qrun(nibA(w.q.x), nibA(w.q.y), nibA(w.q.z), nibA(w.q.w), x[0], x[1], x[2], x[3], NIB_A);
  let d1 = qrun(nibB(w.q.x), nibB(w.q.y), nibB(w.q.z), nibB(w.q.w), x[4], x[5], x[6], x[7], NIB_B);
  return w.d * (d0 + d1 - 8.0 * (sx.x + sx.y));
}

// --- XQ8: each format's dot with 8-bit x (dot4I8Packed; gemv.wgsl XQ8 only)
#if XQ8
// sum of the 16 products of two runs of packed i8 (dot4I8Packed: one instruction a word where the GPU has it)
fn dot4(a: vec4<u32>, b: vec4<u32>) -> i32 {
  return dot4I8Packed(a.x, b.x) + dot4I8Packed(a.y, b.y) + dot4I8Packed(a.z, b.z) + dot4I8Packed(a.w, b.w);
}

fn q4_k_dot8(w: q4_k_p, x: array<vec4<u32>, 2>, xd: array<vec2<f32>, 2>) -> f32 {
  let lo = w.q & vec4<u32>(0x0F0F0F0Fu);
  let hi = (w.q >> vec4<u32>(4u)) & vec4<u32>(0x0F0F0F0Fu);
  return w.s.x * xd[0].x * f32(dot4(lo, x[0])) - w.m.x * xd[0].y + w.s.y * xd[1].x * f32(dot4(hi, x[1])) - w.m.y * xd[1].y;
}

// run k's q as 4 packed bytes a word (0..63: positive as i8)
fn q6_k_q8(w: q6_k_p, k: u32) -> vec4<u32> {
  let l = select(w.l0, w.l1, k % 2u == 1u);
  return ((l >> vec4<u32>(4u * (k / 2u))) & vec4<u32>(0x0F0F0F0Fu)) | (((w.h >> vec4<u32>(2u * k)) & vec4<u32>(0x03030303u)) << vec4<u32>(4u));
}

fn q6_k_dot8(w: q6_k_p, x: array<vec4<u32>, 4>, xd: array<vec2<f32>, 4>) -> f32 {
  var s = 0.0;
#unroll k 4
  s += w.s[{{k}}] * (xd[{{k}}].x * f32(dot4(q6_k_q8(w, {{k}}u), x[{{k}}])) - 32.0 * xd[{{k}}].y);
#endunroll
  return s;
}

fn q8_0_dot8(w: q8_0_p, x: array<vec4<u32>, 2>, xd: array<vec2<f32>, 2>) -> f32 {
  return w.d * (xd[0].x * f32(dot4(w.q0, x[0])) + xd[1].x * f32(dot4(w.q1, x[1])));
}

fn q4_0_dot8(w: q4_0_p, x: array<vec4<u32>, 2>, xd: array<vec2<f32>, 2>) -> f32 {
  let lo = w.q & vec4<u32>(0x0F0F0F0Fu);
  let hi = (w.q >> vec4<u32>(4u)) & vec4<u32>(0x0F0F0F0Fu);
  return w.d * (xd[0].x * f32(dot4(lo, x[0])) - 8.0 * xd[0].y + xd[1].x * f32(dot4(hi, x[1])) - 8.0 * xd[1].y);
}
#endif
