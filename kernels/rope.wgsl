// RoPE in place on the q and k heads of a fused QKV row, Hugging Face rotate_half
// convention: (x1, x2) = (x[i], x[i + D/2]) -> (x1 c - x2 s, x2 c + x1 s), angle =
// pos * invFreq[i] (invFreq carries any llama3 scaling, computed on the host).
struct Params { M: u32, D: u32, heads: u32, ldq: u32, }
@group(0) @binding(0) var<storage, read_write> Q: array<f32>;
@group(0) @binding(1) var<storage, read> rows: array<vec4<u32>>; // (seq, i, pos, 0)
@group(0) @binding(2) var<storage, read> invFreq: array<f32>;
@group(0) @binding(3) var<uniform> P: Params;

// Cody-Waite reduction to [-pi, pi]: GPU sin/cos are only accurate there.
fn reduce(x: f32) -> f32 {
  let k = round(x * 0.15915494309189535);
  return (x - k * 6.28125) - k * 0.0019353071795864769;
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let half = P.D / 2u;
  let idx = gid.x;
  let m = gid.y;
  if (idx >= P.heads * half || m >= P.M) { return; }
  let h = idx / half;
  let i = idx % half;
  let a = reduce(f32(rows[m].z) * invFreq[i]);
  let c = cos(a);
  let s = sin(a);
  let base = m * P.ldq + h * P.D;
  let x1 = Q[base + i];
  let x2 = Q[base + i + half];
  Q[base + i] = x1 * c - x2 * s;
  Q[base + i + half] = x2 * c + x1 * s;
}
