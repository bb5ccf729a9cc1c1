// The Hono app: runtime-agnostic (`app.fetch` maps a Request to a Response), so
// Bun.serve and Deno.serve both run it. Every error leaves as OpenAI's JSON shape.
import { Hono, type Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ServerContext } from "../src/serving/context.ts";
import { ApiError } from "../src/serving/api-error.ts";
import { apiKey } from "./middleware/api-key.ts";
import { jsonBody } from "./middleware/json-body.ts";
import { completionsRoute } from "./completions.ts";
import { chatRoute } from "./chat.ts";
import { modelsRoute } from "./models.ts";
import { healthRoute } from "./health.ts";
import { metricsRoute } from "./metrics.ts";
import { versionRoute } from "./version.ts";
import { requestId } from "./middleware/request-id.ts";
import { requestLog } from "./middleware/request-log.ts";

/** OpenAI request bodies are a few levels deep; anything far deeper is hostile. */
const MAX_JSON_DEPTH = 64;

export function createApp(ctx: ServerContext) {
  const app = new Hono();
  app.use("*", requestId());
  const write = ctx.opts.requestLog;
  if (write) app.use("*", requestLog({ write, logPrompts: ctx.opts.logPrompts, quiet: ["/health", "/metrics"] }));
  app.use("/v1/*", apiKey(ctx.opts.apiKey));
  app.on("POST", ["/v1/completions", "/v1/chat/completions"], jsonBody({ maxBytes: ctx.opts.maxBodyBytes, maxDepth: MAX_JSON_DEPTH }));
  app.route("/v1", completionsRoute(ctx));
  app.route("/v1", chatRoute(ctx));
  app.route("/v1", modelsRoute(ctx));
  app.route("/", healthRoute(ctx));
  app.route("/", metricsRoute(ctx));
  app.route("/", versionRoute(ctx));
  app.notFound((c) => errorResponse(c, new ApiError(404, `no route for ${c.req.method} ${c.req.path}`, null, "not_found")));
  app.onError((err, c) => {
    if (err instanceof ApiError) return errorResponse(c, err);
    if (err instanceof HTTPException) return errorResponse(c, new ApiError(err.status, err.message || "bad request"));
    ctx.opts.log(`internal error on ${c.req.method} ${c.req.path}: ${(err as Error).stack ?? err}`);
    return errorResponse(c, new ApiError(500, `internal server error: ${(err as Error).message}`));
  });
  return app;
}

function errorResponse(c: Context, err: ApiError): Response {
  return c.json(err.toJSON(), err.status as 400, err.headers);
}
