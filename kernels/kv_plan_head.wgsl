// Included by kv_rank.wgsl and kv_evict.wgsl (not a kernel of its own): one head of a
// GPU eviction pass as src/cache/gpu-planner.ts writes it (INFO_WORDS u32 words), and
// the helpers both passes use. Needs `blockIds`, `P.BS` and the workgroup size `WG` in
// the including kernel; declares the workgroup array `scan` (WG words).
// len: keys at ranking; lenNow: keys at eviction (a decode round may have appended);
// base / outBase: the head's scratch and chunk-sum offsets (layout in kv_rank.wgsl).
struct Head { tableOffset: u32, len: u32, protectFrom: u32, radius: u32, chunk: u32, base: u32, outBase: u32, evict: u32, lenNow: u32, }

fn nextPow2(n: u32) -> u32 {
  if (n <= 1u) { return 1u; }
  return 1u << (32u - countLeadingZeros(n - 1u));
}

#include kv_slot

var<workgroup> scan: array<u32, WG>;

// Inclusive prefix sums of v over the workgroup's threads (Hillis-Steele in `scan`,
// which holds them all on return); every thread of the workgroup calls it.
fn workgroupScan(t: u32, v: u32) -> u32 {
  scan[t] = v;
  workgroupBarrier();
  for (var d = 1u; d < WG; d <<= 1u) {
    var s = scan[t];
    if (t >= d) { s += scan[t - d]; }
    workgroupBarrier();
    scan[t] = s;
    workgroupBarrier();
  }
  return scan[t];
}
