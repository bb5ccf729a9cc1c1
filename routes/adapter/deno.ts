// Deno.serve adapter (typed loosely: the project type-checks against Bun's types).
import { urlOf, type FetchHandler, type Listener, type ListenOptions } from "./types.ts";

interface DenoHttpServer {
  addr: { port: number };
  shutdown(): Promise<void>;
}

export function listenDeno(fetch: FetchHandler, o: ListenOptions): Listener {
  const Deno = (globalThis as any).Deno;
  const server: DenoHttpServer = Deno.serve({ hostname: o.host, port: o.port, onListen: () => {} }, (req: Request) => withDisconnectSignal(req, fetch));
  const port = server.addr.port;
  return {
    adapter: "Deno.serve",
    url: urlOf(o.host, port),
    port,
    // shutdown() is graceful; a forced stop stops waiting for it
    stop: (force) => (force ? (void server.shutdown(), Promise.resolve()) : server.shutdown()),
  };
}

/**
 * Deno's request.signal also aborts after a successful response (its "legacy abort",
 * unless --unstable-no-legacy-abort), so the app gets a signal that follows it only
 * until the handler has answered: then it means the client left. A client that
 * leaves a stream later is seen by the stream's cancel (Hono's onAbort). Reading
 * request.signal makes Deno print a one-time notice about the legacy abort;
 * `"unstable": ["no-legacy-abort"]` in deno.json silences it (and this still works).
 */
async function withDisconnectSignal(req: Request, fetch: FetchHandler): Promise<Response> {
  const ac = new AbortController();
  const follow = () => ac.abort();
  req.signal.addEventListener("abort", follow, { once: true });
  try {
    return await fetch(new Request(req, { signal: ac.signal }));
  } finally {
    req.signal.removeEventListener("abort", follow);
  }
}
