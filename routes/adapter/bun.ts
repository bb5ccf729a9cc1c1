// Bun.serve adapter.
import { urlOf, type FetchHandler, type Listener, type ListenOptions } from "./types.ts";

export function listenBun(fetch: FetchHandler, o: ListenOptions): Listener {
  const server = Bun.serve({
    hostname: o.host,
    port: o.port,
    fetch,
    // a stream can sit silent through a long prefill or queue wait; never time it out
    idleTimeout: 0,
  });
  const port = server.port ?? o.port;
  return { adapter: "Bun.serve", url: urlOf(o.host, port), port, stop: (force) => server.stop(force) };
}
