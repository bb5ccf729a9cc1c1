// apiKey: requires "Authorization: Bearer <key>" when the server has a key.
import type { MiddlewareHandler } from "hono";
import { ApiError } from "../api-error.ts";

/**
 * @example
 * app.use("/v1/*", apiKey(process.env.KVC_API_KEY ?? null))
 */
export function apiKey(key: string | null): MiddlewareHandler {
  return async function apiKey(c, next) {
    if (key !== null) {
      const m = /^Bearer\s+(\S+)\s*$/i.exec(c.req.header("authorization") ?? "");
      if (!m) throw new ApiError(401, "missing API key: send it as \"Authorization: Bearer <key>\"", null, "invalid_api_key");
      if (!sameText(m[1], key)) throw new ApiError(401, "incorrect API key provided", null, "invalid_api_key");
    }
    await next();
  };
}

/** Compares in time that depends only on the lengths, not on where they differ. */
function sameText(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}
