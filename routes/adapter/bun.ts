// Bun.serve adapter. uWebSockets closes a connection whose headers take over 10 s,
// and `idleTimeout` one that sits silent; that timeout is lifted while a request is
// in progress (the app's body deadline covers its body, and a silent stream or a
// long generation must never be cut), then set again once its response has gone out.
import { OVER_CAPACITY_BODY, OVER_CAPACITY_RETRY_S, urlOf, type FetchHandler, type Listener, type ListenOptions } from "./types.ts";

export function listenBun(fetch: FetchHandler, o: ListenOptions): Listener {
  const { idleTimeoutS, maxConnections } = o.limits;
  // Bun tells a handler nothing of connections: requests in progress are what it counts
  let inProgress = 0;
  const server = Bun.serve({
    hostname: o.host,
    port: o.port,
    idleTimeout: idleTimeoutS,
    async fetch(req, srv) {
      if (inProgress >= maxConnections) return overCapacity();
      inProgress++;
      srv.timeout(req, 0);
      let ended = false;
      const end = () => {
        if (ended) return;
        ended = true;
        inProgress--;
        srv.timeout(req, idleTimeoutS);
      };
      try {
        const res = await fetch(req);
        if (!res.body) {
          end();
          return res;
        }
        return new Response(untilDone(res.body, end), res);
      } catch (e) {
        end();
        throw e;
      }
    },
  });
  const port = server.port ?? o.port;
  return { adapter: "Bun.serve", url: urlOf(o.host, port), port, stop: (force) => server.stop(force) };
}

function overCapacity(): Response {
  return new Response(OVER_CAPACITY_BODY, {
    status: 503,
    headers: { "Content-Type": "application/json", "Retry-After": String(OVER_CAPACITY_RETRY_S), Connection: "close" },
  });
}

/** `body` as is, calling `done` once it has ended, failed or been cancelled (the client left). */
function untilDone(body: ReadableStream<Uint8Array>, done: () => void): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(c) {
      try {
        const r = await reader.read();
        if (r.done) {
          done();
          c.close();
        } else c.enqueue(r.value);
      } catch (e) {
        done();
        c.error(e);
      }
    },
    cancel(reason) {
      done();
      return reader.cancel(reason);
    },
  });
}
