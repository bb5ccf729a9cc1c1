// GET /health: 200 while the server serves (open even when an API key is set, as in vLLM).
import { Hono } from "hono";
import type { ServerContext } from "../src/serving/context.ts";

export function healthRoute(ctx: ServerContext) {
  return new Hono().get("/health", (c) => c.json({ status: "ok", model: ctx.opts.modelId }));
}
