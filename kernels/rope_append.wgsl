// RoPE and the cache append of one layer in one pass over a fused QKV row:
// - q heads are rotated in place (attention reads them from QKV);
// - k heads are rotated in registers and written, with v, into the paged pool
//   (QKV's k and v are left as they came). A block holds BS tokens of ONE (layer, KV
//   head); the slot of new token i of a sequence's head is lenBefore + i, found through
//   that head's block list. K/V pools: f16 pairs packed in u32, [block][slot][D/2];
//   posPool: original positions; scorePool: the eviction metric, zero for a new token.
// RoPE is Hugging Face rotate_half: (x1, x2) = (x[i], x[i + D/2]) -> (x1 c - x2 s,
// x2 c + x1 s), angle = pos * invFreq[i] (invFreq carries any llama3 scaling, made on
// the host). One thread takes dims 2p, 2p + 1 and their partners 2p + D/2, 2p + 1 + D/2:
// the two packed f16 pairs p and p + D/4 of the pool (so D % 4 == 0).
// invFreq is a uniform (FREQ4 vec4s), which keeps this kernel at 8 storage bindings.
struct Params { M: u32, D: u32, H: u32, KVH: u32, L: u32, layer: u32, BS: u32, ldq: u32, }
@group(0) @binding(0) var<storage, read_write> qkv: array<f32>;
@group(0) @binding(1) var<storage, read> rows: array<vec4<u32>>;   // (seq, i, pos, 0)
@group(0) @binding(2) var<storage, read> heads: array<vec2<u32>>;  // (blockListOffset, lenBefore) per (seq, layer, kvHead)
@group(0) @binding(3) var<storage, read> blockIds: array<u32>;
@group(0) @binding(4) var<storage, read_write> Kp: array<u32>;
@group(0) @binding(5) var<storage, read_write> Vp: array<u32>;
@group(0) @binding(6) var<storage, read_write> posPool: array<u32>;
@group(0) @binding(7) var<storage, read_write> scorePool: array<f32>;
@group(0) @binding(8) var<uniform> invFreq: array<vec4<f32>, {{FREQ4}}>;
@group(0) @binding(9) var<uniform> P: Params;
#include kv_slot

// Cody-Waite reduction to [-pi, pi]: GPU sin/cos are only accurate there.
fn reduce(x: f32) -> f32 {
  let k = round(x * 0.15915494309189535);
  return (x - k * 6.28125) - k * 0.0019353071795864769;
}

fn freq(i: u32) -> f32 { return invFreq[i / 4u][i % 4u]; }

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let half = P.D / 2u;
  let quarter = P.D / 4u;
  let idx = gid.x;  // over (H + KVH) * D/4
  let m = gid.y;
  if (idx >= (P.H + P.KVH) * quarter || m >= P.M) { return; }
  let h = idx / quarter;
  let p = idx % quarter;
  let row = rows[m];
  let pos = f32(row.z);
  let a0 = reduce(pos * freq(2u * p));
  let a1 = reduce(pos * freq(2u * p + 1u));
  let c = vec2<f32>(cos(a0), cos(a1));
  let s = vec2<f32>(sin(a0), sin(a1));
  let base = m * P.ldq + h * P.D + 2u * p;
  let x1 = vec2<f32>(qkv[base], qkv[base + 1u]);
  let x2 = vec2<f32>(qkv[base + half], qkv[base + half + 1u]);
  let y1 = x1 * c - x2 * s;
  let y2 = x2 * c + x1 * s;
  if (h < P.H) {
    qkv[base] = y1.x;
    qkv[base + 1u] = y1.y;
    qkv[base + half] = y2.x;
    qkv[base + half + 1u] = y2.y;
    return;
  }
  let kh = h - P.H;
  let hd = heads[(row.x * P.L + P.layer) * P.KVH + kh];
  let slot = hd.y + row.y;
  let phys = kvSlot(hd.x, slot);
  let vbase = base + P.KVH * P.D;
  Kp[phys * half + p] = pack2x16float(y1);
  Kp[phys * half + p + quarter] = pack2x16float(y2);
  Vp[phys * half + p] = pack2x16float(vec2<f32>(qkv[vbase], qkv[vbase + 1u]));
  Vp[phys * half + p + quarter] = pack2x16float(vec2<f32>(qkv[vbase + half], qkv[vbase + half + 1u]));
  if (p == 0u) {
    posPool[phys] = row.z;
    scorePool[phys] = 0.0;
  }
}
