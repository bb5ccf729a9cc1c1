// The Hono app: runtime-agnostic (`app.fetch` maps a Request to a Response), so
// Bun.serve and Deno's node:http both run it. Every error leaves as OpenAI's JSON shape.
import { Hono, type Context } from "hono";
import { cors } from "hono/cors";
import type { ServerContext } from "../src/serving/context.ts";
import { ApiError } from "./api-error.ts";
import { isForeseen, toApiError } from "./errors.ts";
import { apiKey } from "./middleware/api-key.ts";
import { bodyWasRead, jsonBody } from "./middleware/json-body.ts";
import { completionsRoute } from "./completions.ts";
import { chatRoute } from "./chat.ts";
import { modelsRoute } from "./models.ts";
import { healthRoute } from "./health.ts";
import { metricsRoute } from "./metrics.ts";
import { versionRoute } from "./version.ts";
import { kvCacheRoute } from "./kv-cache.ts";
import { playgroundRoute } from "./playground.ts";
import { requestId } from "./middleware/request-id.ts";
import { requestLog } from "./middleware/request-log.ts";

/** OpenAI request bodies are a few levels deep; anything far deeper is hostile. */
const MAX_JSON_DEPTH = 64;

export function createApp(ctx: ServerContext) {
  const app = new Hono();
  app.use("*", requestId());
  const write = ctx.opts.requestLog;
  if (write) app.use("*", requestLog({ write, logPrompts: ctx.opts.logPrompts, quiet: ["/health", "/metrics", "/", "/playground/*", "/v1/kv_cache/*"] }));
  // before the key check: a browser's preflight carries no Authorization
  const origins = ctx.opts.corsOrigins;
  if (origins.length) app.use("*", cors({ origin: origins.includes("*") ? "*" : origins, exposeHeaders: ["X-Request-Id", "Retry-After"], maxAge: 600 }));
  app.use("/v1/*", apiKey(ctx.opts.apiKey));
  const bodyTimeoutMs = ctx.opts.bodyTimeoutS * 1000;
  app.on("POST", ["/v1/completions", "/v1/chat/completions"], jsonBody({ maxBytes: ctx.opts.maxBodyBytes, maxDepth: MAX_JSON_DEPTH, timeoutMs: bodyTimeoutMs }));
  app.route("/v1", completionsRoute(ctx));
  app.route("/v1", chatRoute(ctx));
  app.route("/v1", modelsRoute(ctx));
  app.route("/v1", kvCacheRoute(ctx));
  app.route("/", healthRoute(ctx));
  app.route("/", metricsRoute(ctx));
  app.route("/", versionRoute(ctx));
  app.route("/", playgroundRoute(ctx));
  let allowed: ((path: string) => string[]) | null = null;
  app.notFound((c) => {
    allowed ??= allowedMethods(app.routes);
    const methods = allowed(c.req.path);
    if (methods.length) {
      return errorResponse(c, new ApiError(405, `${c.req.path} takes ${methods.join(" or ")}, not ${c.req.method}`, null, "method_not_allowed", undefined, { Allow: methods.join(", ") }));
    }
    return errorResponse(c, new ApiError(404, `no route for ${c.req.method} ${c.req.path}`, null, "not_found"));
  });
  app.onError((err, c) => {
    if (!isForeseen(err)) ctx.opts.log(`internal error on ${c.req.method} ${c.req.path}: ${(err as Error).stack ?? err}`);
    return errorResponse(c, toApiError(err));
  });
  return app;
}

/**
 * An error answered before the request's body was read (401, 405, 413, 415, 408...)
 * closes the connection: what is left of the body would otherwise be read as the
 * next request, or hold the connection while it trickles in.
 */
function errorResponse(c: Context, err: ApiError): Response {
  const close: Record<string, string> = hasBody(c.req.raw) && !bodyWasRead(c) ? { Connection: "close" } : {};
  return c.json(err.toJSON(), err.status as 400, { ...err.headers, ...close });
}

function hasBody(req: Request): boolean {
  return req.headers.has("transfer-encoding") || Number(req.headers.get("content-length") ?? 0) > 0;
}

/** The methods each route path answers (GET brings HEAD), for 405's Allow. */
function allowedMethods(routes: { path: string; method: string }[]): (path: string) => string[] {
  const byPath = new Map<RegExp, Set<string>>();
  const patterns = new Map<string, RegExp>();
  for (const r of routes) {
    if (r.method === "ALL" || r.path.includes("*")) continue; // middleware
    const re = patterns.get(r.path) ?? new RegExp(`^${r.path.replace(/:[^/]+/g, "[^/]+")}/?$`);
    patterns.set(r.path, re);
    const set = byPath.get(re) ?? new Set();
    set.add(r.method);
    if (r.method === "GET") set.add("HEAD");
    byPath.set(re, set);
  }
  return (path) => [...new Set([...byPath].filter(([re]) => re.test(path)).flatMap(([, m]) => [...m]))];
}
