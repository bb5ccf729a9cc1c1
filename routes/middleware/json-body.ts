// jsonBody: reads a request body as JSON with the checks a public endpoint needs
// before anything parses it: JSON content type (415), size (413, counted while
// reading so a huge or endless body is never held), time (408, so a stalled or
// trickling body cannot hold its connection), UTF-8 (400), nesting depth
// (400, so a deeply nested body cannot exhaust the parser's stack), syntax (400).
import type { Context, MiddlewareHandler } from "hono";
import { ApiError } from "../api-error.ts";

export interface JsonBodyOptions {
  maxBytes: number;
  maxDepth: number;
  /** the whole body must arrive within this, counted from its headers */
  timeoutMs: number;
}

export type JsonBodyEnv = { Variables: { body: unknown; bodyRead?: boolean } };

/** Whether the request's body was read to its end (else an error answer closes the connection). */
export function bodyWasRead(c: Context): boolean {
  return c.get("bodyRead") === true;
}

/**
 * @example
 * app.post("/v1/completions", jsonBody({ maxBytes: 4 * 2 ** 20, maxDepth: 64, timeoutMs: 30_000 }), (c) => use(c.get("body")))
 */
export function jsonBody(opts: JsonBodyOptions): MiddlewareHandler<JsonBodyEnv> {
  return async function jsonBody(c, next) {
    const type = c.req.header("content-type") ?? "";
    if (!/^\s*application\/([\w.+-]+\+)?json\s*(;|$)/i.test(type)) {
      throw new ApiError(415, `send the body as JSON with "Content-Type: application/json" (got ${type ? `"${type}"` : "no content type"})`, null, "unsupported_media_type");
    }
    const bytes = await readLimited(c.req.raw, opts.maxBytes, opts.timeoutMs);
    c.set("bodyRead", true);
    if (!bytes.length) throw new ApiError(400, "the request body is empty; send a JSON object", null, "invalid_json");
    let text: string;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    } catch {
      throw new ApiError(400, "the request body is not valid UTF-8", null, "invalid_encoding");
    }
    const depth = nestingDepth(text);
    if (depth > opts.maxDepth) throw new ApiError(400, `the request body nests ${depth} levels deep; at most ${opts.maxDepth} are allowed`, null, "invalid_json");
    try {
      c.set("body", JSON.parse(text));
    } catch (e) {
      throw new ApiError(400, `the request body is not valid JSON: ${(e as Error).message}`, null, "invalid_json");
    }
    await next();
  };
}

async function readLimited(req: Request, maxBytes: number, timeoutMs: number): Promise<Uint8Array> {
  const tooLarge = () => new ApiError(413, `the request body is larger than ${formatBytes(maxBytes)}`, null, "request_too_large");
  const declared = Number(req.headers.get("content-length") ?? NaN);
  if (declared > maxBytes) throw tooLarge();
  if (!req.body) return new Uint8Array(0);
  const reader = req.body.getReader();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reader.cancel().catch(() => {});
      reject(new ApiError(408, `the request body did not arrive within ${timeoutMs / 1000} s`, null, "request_timeout"));
    }, timeoutMs);
  });
  try {
    return await readAll(reader, maxBytes, tooLarge, late);
  } finally {
    clearTimeout(timer);
  }
}

async function readAll(reader: ReadableStreamDefaultReader<Uint8Array>, maxBytes: number, tooLarge: () => ApiError, late: Promise<never>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const read = reader.read().catch((e: Error) => {
      throw new ApiError(400, `the request body could not be read: ${e.message}`, null, "invalid_body");
    });
    read.catch(() => {}); // a read that fails after the deadline has nobody left to tell
    const { done, value } = await Promise.race([read, late]);
    if (done) break;
    size += value.length;
    if (size > maxBytes) {
      reader.cancel().catch(() => {});
      throw tooLarge();
    }
    parts.push(value);
  }
  const out = new Uint8Array(size);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Deepest nesting of arrays and objects, strings skipped; a linear scan. */
function nestingDepth(text: string): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (inString) {
      if (ch === 92 /* \ */) i++;
      else if (ch === 34 /* " */) inString = false;
    } else if (ch === 34) inString = true;
    else if (ch === 91 /* [ */ || ch === 123 /* { */) max = Math.max(max, ++depth);
    else if (ch === 93 /* ] */ || ch === 125 /* } */) depth--;
  }
  return max;
}

function formatBytes(n: number): string {
  return n % 2 ** 20 === 0 ? `${n / 2 ** 20} MiB` : n % 1024 === 0 ? `${n / 1024} KiB` : `${n} bytes`;
}
