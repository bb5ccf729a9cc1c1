// Valibot at the boundary: parse a request body or throw an ApiError naming the
// first bad field (param = its path, e.g. "kv_compression.rate", "messages[0].role").
import * as v from "valibot";
import { ApiError } from "./api-error.ts";

export function parseBody<S extends v.GenericSchema>(schema: S, body: unknown): v.InferOutput<S> {
  const r = v.safeParse(schema, body, { abortEarly: true });
  if (r.success) return r.output;
  const issue = r.issues[0];
  const param = issuePath(issue);
  throw new ApiError(400, param ? `${param}: ${issue.message}` : `the request body: ${issue.message}`, param, "invalid_value");
}

/** `a.b[0].c` from a valibot issue path; null for the body itself. */
function issuePath(issue: v.BaseIssue<unknown>): string | null {
  let s = "";
  for (const item of issue.path ?? []) {
    const key = (item as { key?: unknown }).key;
    s += typeof key === "number" ? `[${key}]` : s ? `.${String(key)}` : String(key);
  }
  return s || null;
}
