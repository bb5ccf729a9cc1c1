// GET /v1/models: the one model this server serves. max_model_len is the longest
// sequence it can run uncompressed: the model's context, or less where the KV cache
// (--kv-memory) holds less.
import { Hono } from "hono";
import type { ServerContext } from "../src/serving/context.ts";
import { ApiError } from "./api-error.ts";
import { usableContext } from "../src/serving/kv-limit.ts";

export function modelsRoute(ctx: ServerContext) {
  const card = () => ({ id: ctx.opts.modelId, object: "model", created: ctx.created, owned_by: "kvc", max_model_len: usableContext(ctx.limits) });
  return new Hono()
    .get("/models", (c) => c.json({ object: "list", data: [card()] }))
    .get("/models/:id", (c) => {
      if (c.req.param("id") !== ctx.opts.modelId) throw new ApiError(404, `The model \`${c.req.param("id")}\` does not exist.`, "model", "model_not_found");
      return c.json(card());
    });
}
