// Included by the kernels that read or write the paged K/V pools (attention,
// attention_prefill, attention_prefill_mma, rope_append, kv_scores, kv_gather,
// kv_survival, and kv_plan_head for kv_rank and kv_evict; not a kernel of its own).
// The including kernel declares `blockIds` (every head's block list, concatenated) and
// `P.BS` (keys per block). A block holds BS consecutive keys of one (layer, KV head).

// pool slot of key j of the head whose block list starts at blockIds[table]
fn kvSlot(table: u32, j: u32) -> u32 {
  return blockIds[table + j / P.BS] * P.BS + j % P.BS;
}
