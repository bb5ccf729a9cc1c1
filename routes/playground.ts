// The playground at GET /: a page (web/) that chats through /v1/chat/completions and
// draws the cache from /v1/kv_cache/{id} and the server from /metrics. Its files are
// read from web/ next to the code, or registered by the single binary (scripts/build.ts),
// and /playground/settings.json hands it the compression settings table, so its
// controls are the request's own fields with the server's defaults.
import { readFileSync } from "node:fs";
import { Hono } from "hono";
import { DEFAULT_COMPRESSION, SETTABLE } from "../src/cache/compression.ts";
import type { ServerContext } from "../src/serving/context.ts";

/** What the page is made of, with its content type. */
export const WEB_ASSETS = {
  "index.html": "text/html; charset=utf-8",
  "playground.js": "text/javascript; charset=utf-8",
  "playground.css": "text/css; charset=utf-8",
} as const;
export type WebAsset = keyof typeof WEB_ASSETS;

const sources = new Map<WebAsset, string>();

/** The single binary registers the embedded copies before the server starts. */
export function registerWebAsset(name: WebAsset, text: string) {
  sources.set(name, text);
}

function webAsset(name: WebAsset): string {
  let s = sources.get(name);
  if (s === undefined) {
    s = readFileSync(new URL(`../web/${name}`, import.meta.url), "utf8");
    sources.set(name, s);
  }
  return s;
}

/** Only the page's own files: no CDN, no inline script. */
const CSP = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

export function playgroundRoute(ctx: ServerContext) {
  const serve = (name: WebAsset) => (c: { body: (b: string, s: 200, h: Record<string, string>) => Response }) =>
    c.body(webAsset(name), 200, { "Content-Type": WEB_ASSETS[name], "Content-Security-Policy": CSP, "Cache-Control": "no-cache" });
  const defaults = { ...DEFAULT_COMPRESSION, ...ctx.opts.compression };
  const settings = {
    model: ctx.opts.modelId,
    max_context: ctx.limits.maxContext,
    settings: SETTABLE.map((s) => ({ field: s.field, ...s.type, help: s.help })),
    defaults: Object.fromEntries(SETTABLE.map((s) => [s.field, defaults[s.key]])),
  };
  return new Hono()
    .get("/", serve("index.html"))
    .get("/playground/playground.js", serve("playground.js"))
    .get("/playground/playground.css", serve("playground.css"))
    .get("/playground/settings.json", (c) => c.json(settings));
}
