// Device-to-device copy in a compute kernel: D[i] = S[i] over n 16-byte words. The
// benchmark's practical bandwidth ceiling (bytes read + bytes written per second).
struct Params { n: u32, }
@group(0) @binding(0) var<storage, read> S: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> D: array<vec4<u32>>;
@group(0) @binding(2) var<uniform> P: Params;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i < P.n) { D[i] = S[i]; }
}
