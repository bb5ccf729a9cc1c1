// What a runtime adapter gives the server: a listening socket that runs `fetch`.

export type FetchHandler = (req: Request) => Response | Promise<Response>;

export interface ListenOptions {
  host: string;
  /** 0 picks a free port */
  port: number;
}

export interface Listener {
  /** "Bun.serve" or "Deno.serve" */
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
