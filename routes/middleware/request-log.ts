// requestLog: one JSON object per request for the operator's log. A request that
// started a generation is written when its sequence has ended (a stream ends long
// after the response went out), with its tokens, KV compression and timings;
// any other when its response is made. Prompt text is never written unless asked.
import type { Context, MiddlewareHandler } from "hono";
import type { Generation } from "../../src/serving/generation.ts";
import { isForeseen, toApiError } from "../errors.ts";
import type { RequestIdEnv } from "./request-id.ts";

/** What a route adds about the request it is serving. */
export interface RequestNote {
  generation: Generation;
  /** the OpenAI id of the answer (cmpl-..., chatcmpl-...) */
  responseId: string;
  model: string;
  stream: boolean;
  /** the prompt as the client sent it (text, token ids or messages) */
  prompt: unknown;
}

export type RequestLogEnv = RequestIdEnv & { Variables: { requestNote?: RequestNote } };

export interface RequestLogOptions {
  write: (entry: Record<string, unknown>) => void;
  /** put the prompt into the entry */
  logPrompts: boolean;
  /** paths whose successful GETs are not written (health checks, scrapes); "/a/*" covers every path under /a/ */
  quiet: string[];
}

/** Called by a route once it has started a generation. */
export function noteRequest(c: Context, note: RequestNote) {
  c.set("requestNote", note);
}

const ms = (x: number) => Math.round(x * 10) / 10;

/**
 * @example
 * app.use("*", requestId(), requestLog({ write: (e) => console.error(JSON.stringify(e)), logPrompts: false, quiet: ["/health"] }))
 */
export function requestLog(o: RequestLogOptions): MiddlewareHandler<RequestLogEnv> {
  return async function requestLog(c, next) {
    const arrived = new Date();
    const t0 = performance.now();
    await next();
    const { method, path } = c.req;
    const status = c.res.status;
    if (method === "GET" && status < 400 && o.quiet.some((q) => (q.endsWith("/*") ? path.startsWith(q.slice(0, -1)) : q === path))) return;
    const entry: Record<string, unknown> = { time: arrived.toISOString(), level: level(status), msg: "request", id: c.get("requestId"), method, path, status };
    if (c.error) entry.error = errorName(c.error);
    const note = c.get("requestNote");
    if (!note) {
      o.write({ ...entry, duration_ms: ms(performance.now() - t0) });
      return;
    }
    const gen = note.generation;
    void gen.finish().then(
      (r) => ({
        finish_reason: r.finishReason,
        prompt_tokens: r.promptTokens,
        completion_tokens: r.completionTokens,
        kv_blocks_used: r.kv.blocksUsed,
        kv_blocks_uncompressed: r.kv.blocksUncompressed,
        kv_compression_rate: r.kv.compressionRate,
        kv_evicted_tokens: r.kv.evictedTokens,
      }),
      (e) => ({ level: "error", error: errorName(e), prompt_tokens: gen.seq.prompt.length }),
    ).then((outcome) => {
      o.write({
        ...entry,
        model: note.model,
        stream: note.stream,
        response_id: note.responseId,
        ...outcome,
        ttft_ms: gen.firstTokenAt === null ? null : ms(gen.firstTokenAt - t0),
        duration_ms: ms((gen.endedAt ?? performance.now()) - t0),
        ...(o.logPrompts ? { prompt: note.prompt } : {}),
      });
    });
  };
}

/** The log's name for a failure: its OpenAI code (or type), or internal_error for one nobody foresaw. */
function errorName(e: unknown): string {
  if (!isForeseen(e)) return "internal_error";
  const a = toApiError(e);
  return a.code ?? a.type;
}

function level(status: number): "info" | "warn" | "error" {
  return status >= 500 ? "error" : status >= 400 ? "warn" : "info";
}
