// GET /health: 200 while the server serves, 503 {"status": "warming_up"} while it still
// compiles its pipelines (the warm-up: requests are taken meanwhile, but wait); open
// even when an API key is set, as in vLLM.
import { Hono } from "hono";
import type { ServerContext } from "../src/serving/context.ts";

export function healthRoute(ctx: ServerContext) {
  return new Hono().get("/health", (c) => (ctx.warming ? c.json({ status: "warming_up", model: ctx.opts.modelId }, 503) : c.json({ status: "ok", model: ctx.opts.modelId })));
}
