// requestId: every response carries X-Request-Id: the client's own when it sent a
// usable one (a proxy's or load balancer's id), else a new UUID.
import type { MiddlewareHandler } from "hono";

export type RequestIdEnv = { Variables: { requestId: string } };

/** What is taken from a client: 1 to 200 visible ASCII characters, no spaces. */
const USABLE = /^[\x21-\x7e]{1,200}$/;

/**
 * @example
 * app.use("*", requestId()); // then c.get("requestId") in later handlers
 */
export function requestId(): MiddlewareHandler<RequestIdEnv> {
  return async function requestId(c, next) {
    const sent = c.req.header("x-request-id");
    const id = sent !== undefined && USABLE.test(sent) ? sent : crypto.randomUUID();
    c.set("requestId", id);
    await next();
    c.header("X-Request-Id", id);
  };
}
