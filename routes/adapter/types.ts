// What a runtime adapter gives the server: a listening socket that runs `fetch`,
// with the connection limits below enforced the same way under Bun and Deno.

export type FetchHandler = (req: Request) => Response | Promise<Response>;

/**
 * How long a client may take and how many it may hold open. None of these cuts a
 * response in progress: a silent SSE stream or a long non-streamed generation
 * runs until it ends (the body timeout is enforced by the app, routes/middleware/json-body.ts).
 */
export interface ConnectionLimits {
  /** to receive a request's headers (Bun: fixed at 10 s by uWebSockets) */
  headerTimeoutS: number;
  /** to receive a request's body, counted from its headers */
  bodyTimeoutS: number;
  /** a keep-alive connection waiting for its next request */
  idleTimeoutS: number;
  /** open connections (Bun: requests in progress); past it a clean 503 and close */
  maxConnections: number;
}

export interface ListenOptions {
  host: string;
  /** 0 picks a free port */
  port: number;
  limits: ConnectionLimits;
}

export interface Listener {
  /** "Bun.serve" or "Deno node:http" */
  readonly adapter: string;
  /** where it listens, e.g. http://127.0.0.1:8080 */
  readonly url: string;
  readonly port: number;
  /** Stops accepting connections; resolves once open ones are closed. `force` closes them now. */
  stop(force: boolean): Promise<void>;
}

export function urlOf(host: string, port: number): string {
  return `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
}

/** The refusal past `maxConnections`: a whole HTTP response, then the connection closes. */
export const OVER_CAPACITY_BODY = JSON.stringify({
  error: { message: "the server has too many open connections; retry shortly", type: "server_error", param: null, code: "too_many_connections" },
});
export const OVER_CAPACITY_RETRY_S = 1;
