// The metrics `kvc serve` exposes on /metrics: vLLM's names (so its dashboards
// work) plus kvc's own KV cache figures. Gauges read the engine at scrape time;
// counters and histograms are fed by each request when it ends.
import type { EngineClient } from "../engine/client.ts";
import { Registry } from "./metrics.ts";

// vLLM v1's buckets (vllm/v1/metrics/loggers.py), so histograms line up.
const TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640, 2560];
const ITL_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80];
const E2E_BUCKETS = [0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920, 7680];
const RATE_BUCKETS = [1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128];

export type ServerMetrics = ReturnType<typeof createServerMetrics>;

export function createServerMetrics(client: EngineClient, modelName: string) {
  const r = new Registry({ model_name: modelName });
  const load = () => client.stats();
  r.gauge("vllm:num_requests_running", "Number of requests in model execution batches.", () => load().running);
  r.gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", () => load().waiting);
  r.gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", () => load().blocksUsed / load().blocksTotal);
  const metrics = {
    registry: r,
    promptTokens: r.counter("vllm:prompt_tokens_total", "Number of prefill tokens processed."),
    generationTokens: r.counter("vllm:generation_tokens_total", "Number of generation tokens processed."),
    preemptions: r.counter("vllm:num_preemptions_total", "Cumulative number of preemption from the engine."),
    ttft: r.histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", TTFT_BUCKETS),
    itl: r.histogram("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", ITL_BUCKETS),
    e2e: r.histogram("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", E2E_BUCKETS),
    blocksUsed: r.gauge("kvc_kv_blocks_used", "KV cache blocks in use, each one (layer, KV head) of block_size tokens.", () => load().blocksUsed),
    blocksTotal: r.gauge("kvc_kv_blocks_total", "KV cache blocks in the pool.", () => load().blocksTotal),
    blocksCached: r.gauge("kvc_kv_blocks_cached", "KV cache blocks no request holds that keep cached prompt K/V (counted free; reclaimed least recently used first).", () => load().blocksCached),
    prefixQueries: r.counter("vllm:prefix_cache_queries_total", "Prefix cache queries, in terms of number of queried tokens."),
    prefixHits: r.counter("vllm:prefix_cache_hits_total", "Prefix cache hits, in terms of number of cached tokens."),
    evictedTokens: r.counter("kvc_kv_evicted_tokens_total", "K/V entries evicted by compression, summed over every (layer, KV head)."),
    queueFull: r.counter("kvc_requests_queue_full_total", "Requests refused with 429 because --max-queue requests were waiting or running."),
    compressionRate: r.histogram("kvc_kv_compression_rate", "Per-request KV compression rate at finish (uncompressed blocks / blocks used).", RATE_BUCKETS),
  };
  return metrics;
}
