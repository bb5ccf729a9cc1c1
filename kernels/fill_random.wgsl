// Random tensors made on the GPU (benchmarks build real-size models without files).
// Element e of a tensor gets m(e) = (hash(hash(seed) ^ e) >> 21) - 1024, an integer in
// [-1024, 1024), and the value m * 2^-(10 + shift): uniform in [-2^-shift, 2^-shift),
// exact in f16, so a CPU reference reproduces every bit (tests/bench/fill.test.ts).
// PAIRS: word i holds elements 2 (first + i) (low half) and 2 (first + i) + 1 (high half)
//      as f16 bits built with integer arithmetic (no float rounding, subnormals kept).
// else: word i holds element first + i as f32: base + m * 2^-(10 + shift).
struct Params { n: u32, first: u32, seed: u32, shift: u32, base: f32, }
@group(0) @binding(0) var<storage, read_write> O: array<u32>;
@group(0) @binding(1) var<uniform> P: Params;

// "lowbias32" integer hash (C. Wellons)
fn hash(v: u32) -> u32 {
  var x = v;
  x ^= x >> 16u;
  x *= 0x7feb352du;
  x ^= x >> 15u;
  x *= 0x846ca68bu;
  x ^= x >> 16u;
  return x;
}

fn draw(e: u32) -> i32 {
  return i32(hash(hash(P.seed) ^ e) >> 21u) - 1024;
}

// f16 bits of m * 2^-(10 + shift); |m| <= 1024, 0 <= shift <= 14
fn f16bits(m: i32) -> u32 {
  if (m == 0) { return 0u; }
  let sign = select(0u, 0x8000u, m < 0);
  let a = u32(abs(m));
  let lead = firstLeadingBit(a); // a = 1.f * 2^lead
  let ex = i32(lead) + 5 - i32(P.shift); // biased f16 exponent
  if (ex <= 0) {
    // subnormal: value = mant * 2^-24
    return sign | (a << (14u - P.shift));
  }
  return sign | (u32(ex) << 10u) | ((a << (10u - lead)) & 0x3ffu);
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= P.n) { return; }
#if PAIRS
  let e = 2u * (P.first + i);
  O[i] = f16bits(draw(e)) | (f16bits(draw(e + 1u)) << 16u);
#else
  let scale = bitcast<f32>((117u - P.shift) << 23u); // 2^-(10 + shift), exact
  O[i] = bitcast<u32>(P.base + f32(draw(P.first + i)) * scale);
#endif
}
