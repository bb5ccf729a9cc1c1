// GET /metrics: Prometheus text format, vLLM's metric names plus kvc_kv_*.
import { Hono } from "hono";
import type { ServerContext } from "../src/serving/context.ts";
import { Registry } from "../src/serving/metrics.ts";

export function metricsRoute(ctx: ServerContext) {
  return new Hono().get("/metrics", (c) => c.body(ctx.metrics.registry.render(), 200, { "Content-Type": Registry.contentType }));
}
