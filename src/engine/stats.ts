// What the engine counts as it runs, for benchmarks (bench/compress.ts, bench/e2e.ts)
// and tests: time by part of compression and of decode rounds, and how often the
// GPU was kept busy across a readback.

export interface EngineStats {
  /** compression: the whole pass, and its parts (gather or GPU ranking + readback, host planning, compaction) */
  compressMs: number;
  gatherMs: number;
  planMs: number;
  applyMs: number;
  compressions: number;
  evictedTokens: number;
  preemptions: number;
  decodeSteps: number;
  /** decode steps submitted while the previous round was still in flight */
  chainedSteps: number;
  /** compression passes that had the next round decode behind their ranking */
  compressOverlapped: number;
  /** passes ranked behind the round still in flight (before its tokens were read) */
  compressAhead: number;
  /** decode rounds: recording their steps, and waiting for their tokens */
  encodeMs: number;
  waitMs: number;
}

export function newEngineStats(): EngineStats {
  return { compressMs: 0, gatherMs: 0, planMs: 0, applyMs: 0, compressions: 0, evictedTokens: 0, preemptions: 0, decodeSteps: 0, chainedSteps: 0, compressOverlapped: 0, compressAhead: 0, encodeMs: 0, waitMs: 0 };
}
