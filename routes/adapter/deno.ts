// Deno adapter on node:http. Deno.serve has no header, body or idle timeouts and no
// way to close a connection from a handler (a stalled body held its connection for
// good); Deno's node:http server is Node's, with all of them. Requests and responses
// cross to the app as web Request/Response; a client that leaves aborts the request's
// signal and cancels the response stream, whatever the size of its body.
import http from "node:http";
import type { Socket } from "node:net";
import { Readable } from "node:stream";
import { OVER_CAPACITY_BODY, OVER_CAPACITY_RETRY_S, urlOf, type FetchHandler, type Listener, type ListenOptions } from "./types.ts";

/** Node checks the header and request timeouts on this period (its default is 30 s). */
const CHECK_INTERVAL_MS = 500;
/** The app answers a slow body with a 408 at the body timeout; Node closes it this much later. */
const BACKSTOP_S = 5;

export async function listenDeno(fetch: FetchHandler, o: ListenOptions): Promise<Listener> {
  const L = o.limits;
  const server = http.createServer({
    headersTimeout: L.headerTimeoutS * 1000,
    // the whole request, headers and body; the response after it is never timed out
    requestTimeout: (L.headerTimeoutS + L.bodyTimeoutS + BACKSTOP_S) * 1000,
    keepAliveTimeout: L.idleTimeoutS * 1000,
    connectionsCheckingInterval: CHECK_INTERVAL_MS,
  });
  const sockets = new Set<Socket>();
  server.on("connection", (socket: Socket) => {
    if (sockets.size >= L.maxConnections) {
      socket.end(OVER_CAPACITY_RESPONSE);
      return;
    }
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  server.on("request", (req, res) => void serveOne(fetch, req, res));
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.port, o.host, () => (server.off("error", reject), resolve()));
  });
  const port = (server.address() as { port: number }).port;
  return {
    adapter: "Deno node:http",
    url: urlOf(o.host, port),
    port,
    stop: (force) =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        if (force) server.closeAllConnections();
        else server.closeIdleConnections();
      }),
  };
}

const OVER_CAPACITY_RESPONSE =
  `HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: ${OVER_CAPACITY_RETRY_S}\r\n` +
  `Connection: close\r\nContent-Length: ${new TextEncoder().encode(OVER_CAPACITY_BODY).length}\r\n\r\n${OVER_CAPACITY_BODY}`;

async function serveOne(fetch: FetchHandler, req: http.IncomingMessage, res: http.ServerResponse) {
  const left = new AbortController();
  res.once("close", () => {
    if (!res.writableFinished) left.abort();
  });
  let response: Response;
  try {
    response = await fetch(toRequest(req, left.signal));
  } catch (e) {
    response = new Response(JSON.stringify({ error: { message: `internal server error: ${(e as Error).message}`, type: "server_error", param: null, code: null } }), { status: 500 });
  }
  const headers: Record<string, string> = {};
  response.headers.forEach((v, k) => (headers[k] = v));
  if (left.signal.aborted) {
    await response.body?.cancel();
    return;
  }
  res.writeHead(response.status, headers);
  if (!response.body) {
    res.end();
    return;
  }
  const reader = response.body.getReader();
  left.signal.addEventListener("abort", () => reader.cancel().catch(() => {}), { once: true });
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (!res.write(value)) await new Promise<void>((r) => (res.once("drain", r), res.once("close", r)));
      if (left.signal.aborted) return;
    }
    res.end();
  } catch {
    res.destroy();
  }
}

function toRequest(req: http.IncomingMessage, signal: AbortSignal): Request {
  const headers = new Headers();
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) headers.append(req.rawHeaders[i], req.rawHeaders[i + 1]);
  const method = req.method ?? "GET";
  const hasBody = method !== "GET" && method !== "HEAD";
  const path = req.url?.startsWith("/") ? req.url : "/";
  return new Request(`http://localhost${path}`, {
    method,
    headers,
    body: hasBody ? (Readable.toWeb(req) as unknown as ReadableStream<Uint8Array>) : null,
    signal,
    // @ts-expect-error a streamed request body (Deno and the fetch spec need it; Bun's types lack it)
    duplex: "half",
  });
}
