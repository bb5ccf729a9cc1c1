// Read-only bandwidth: the ceiling for read-dominated kernels (decode GEMVs read weights
// and write almost nothing, so a copy's read + write is not their ceiling). Workgroup g
// walks words g * 256 + t, stepping by the whole grid, and writes the wrapping u32 sum of
// every component it read to O[g], so no load can be dropped.
struct Params { n: u32, }
@group(0) @binding(0) var<storage, read> S: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> O: array<u32>;
@group(0) @binding(2) var<uniform> P: Params;

var<workgroup> part: array<u32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32, @builtin(num_workgroups) nwg: vec3<u32>) {
  let stride = nwg.x * 256u;
  var acc = vec4<u32>(0u);
  for (var i = wid.x * 256u + t; i < P.n; i += stride) { acc += S[i]; }
  part[t] = acc.x + acc.y + acc.z + acc.w;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s >>= 1u) {
    if (t < s) { part[t] += part[t + s]; }
    workgroupBarrier();
  }
  if (t == 0u) { O[wid.x] = part[0]; }
}
