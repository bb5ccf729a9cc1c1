// Weight dtype conversion on the GPU: f32 or bf16 words in, f16 pairs (packed u32) out.
// Each invocation writes one output u32 (two f16 values).
struct Params { n: u32, offset: u32, }
@group(0) @binding(0) var<storage, read> S: array<u32>;
@group(0) @binding(1) var<storage, read_write> O: array<u32>;
@group(0) @binding(2) var<uniform> P: Params;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= P.n) { return; }
#if BF16
  let w = S[i];
  let v = vec2<f32>(bitcast<f32>(w << 16u), bitcast<f32>(w & 0xffff0000u));
#else
  let v = vec2<f32>(bitcast<f32>(S[2u * i]), bitcast<f32>(S[2u * i + 1u]));
#endif
  O[P.offset + i] = pack2x16float(v);
}
