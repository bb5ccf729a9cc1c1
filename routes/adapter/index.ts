// Picks the adapter of the runtime we run on.
import type { FetchHandler, Listener, ListenOptions } from "./types.ts";

export type { ConnectionLimits, Listener } from "./types.ts";

export async function listen(fetch: FetchHandler, o: ListenOptions): Promise<Listener> {
  if ((globalThis as { Bun?: unknown }).Bun) return (await import("./bun.ts")).listenBun(fetch, o);
  if ((globalThis as { Deno?: unknown }).Deno) return (await import("./deno.ts")).listenDeno(fetch, o);
  throw new Error("kvc serve runs on Bun or Deno");
}
