// GET /version: what is serving: kvc's name and version (package.json), the
// runtime, the WebGPU adapter and the model. Open like /health.
import { Hono } from "hono";
import pkg from "../package.json" with { type: "json" };
import type { ServerContext } from "../src/serving/context.ts";

export function versionRoute(ctx: ServerContext) {
  const g = globalThis as { Bun?: { version: string }; Deno?: { version: { deno: string } } };
  const gpu = ctx.device;
  const body = {
    name: pkg.name,
    version: pkg.version,
    runtime: gpu.runtime,
    runtime_version: g.Bun?.version ?? g.Deno?.version.deno ?? null,
    webgpu: gpu.webgpu,
    adapter: gpu.adapterName,
    model: ctx.opts.modelId,
  };
  return new Hono().get("/version", (c) => c.json(body));
}
