// Append the new tokens' K and V (after RoPE) of one layer into the paged pool.
// A block holds BS tokens of ONE (layer, KV head). The slot of new token i of a
// sequence's head is lenBefore + i, found through that head's block list.
// K/V pools: f16 pairs packed in u32, [block][slot][D/2]; posPool: original positions;
// scorePool: the eviction metric, which starts at zero for a new token.
struct Params { M: u32, D: u32, H: u32, KVH: u32, L: u32, layer: u32, BS: u32, ldq: u32, }
@group(0) @binding(0) var<storage, read> qkv: array<f32>;
@group(0) @binding(1) var<storage, read> rows: array<vec4<u32>>;   // (seq, i, pos, 0)
@group(0) @binding(2) var<storage, read> heads: array<vec2<u32>>;  // (blockListOffset, lenBefore) per (seq, layer, kvHead)
@group(0) @binding(3) var<storage, read> blockIds: array<u32>;
@group(0) @binding(4) var<storage, read_write> Kp: array<u32>;
@group(0) @binding(5) var<storage, read_write> Vp: array<u32>;
@group(0) @binding(6) var<storage, read_write> posPool: array<u32>;
@group(0) @binding(7) var<storage, read_write> scorePool: array<f32>;
@group(0) @binding(8) var<uniform> P: Params;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let half = P.D / 2u;
  let idx = gid.x;  // over KVH * D/2
  let m = gid.y;
  if (idx >= P.KVH * half || m >= P.M) { return; }
  let h = idx / half;
  let p = idx % half;
  let row = rows[m];
  let hd = heads[(row.x * P.L + P.layer) * P.KVH + h];
  let slot = hd.y + row.y;
  let phys = blockIds[hd.x + slot / P.BS] * P.BS + slot % P.BS;
  let kbase = m * P.ldq + P.H * P.D + h * P.D + 2u * p;
  let vbase = kbase + P.KVH * P.D;
  Kp[phys * half + p] = pack2x16float(vec2<f32>(qkv[kbase], qkv[kbase + 1u]));
  Vp[phys * half + p] = pack2x16float(vec2<f32>(qkv[vbase], qkv[vbase + 1u]));
  if (p == 0u) {
    posPool[phys] = row.z;
    scorePool[phys] = 0.0;
  }
}
