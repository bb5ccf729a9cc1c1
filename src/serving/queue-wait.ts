// Retry-After for a 429: when the queue is expected to have room for this client.
// Requests leave the queue at the pace they have lately been finishing; the clients
// already told to come back are ahead of this one, so each refusal gets a later
// time and retries spread out instead of all returning at once.

/** Weight of the newest gap between two finishes in the running mean. */
const ALPHA = 0.2;
/** A gap longer than this (an idle server) says nothing of the pace under load. */
const MAX_GAP_S = 60;
export const RETRY_AFTER_MAX_S = 120;

export class QueueWait {
  /** running mean of the seconds between two requests finishing; null until two have */
  private gapS: number | null = null;
  private lastFinish: number | null = null;
  /** when the clients told to retry will come back (seconds, the clock's) */
  private retries: number[] = [];

  constructor(private now: () => number = () => performance.now() / 1000) {}

  /** A request left the queue (finished, failed or cancelled). */
  finished() {
    const t = this.now();
    if (this.lastFinish !== null) {
      const gap = Math.min(t - this.lastFinish, MAX_GAP_S);
      this.gapS = this.gapS === null ? gap : this.gapS + ALPHA * (gap - this.gapS);
    }
    this.lastFinish = t;
  }

  /**
   * Whole seconds a refused client should wait: `over` requests must leave before
   * the queue has room (1 when it is just full), after those told to retry earlier.
   * Without a measured pace, a second per request.
   */
  retryAfterS(over: number): number {
    const t = this.now();
    this.retries = this.retries.filter((r) => r > t);
    const ahead = Math.max(1, over) + this.retries.length;
    const s = Math.min(RETRY_AFTER_MAX_S, Math.max(1, Math.ceil(ahead * (this.gapS ?? 1))));
    this.retries.push(t + s);
    return s;
  }
}
