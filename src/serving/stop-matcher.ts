// StopMatcher: finds stop strings in streamed text without ever letting their text
// out. Text that could still grow into a stop string (a suffix that is a prefix
// of one, e.g. "\n\nUs" for "\n\nUser:") is held back until the next piece
// decides it, so a stop split across tokens is caught too.

export class StopMatcher {
  private held = "";

  constructor(private stops: readonly string[]) {}

  /** Adds text; returns what is safe to emit. On a match, only the text before it. */
  push(text: string): { text: string; stopped: boolean } {
    const buf = this.held + text;
    let cut = -1;
    for (const s of this.stops) {
      const i = buf.indexOf(s);
      if (i >= 0 && (cut < 0 || i < cut)) cut = i;
    }
    if (cut >= 0) {
      this.held = "";
      return { text: buf.slice(0, cut), stopped: true };
    }
    const keep = this.longestStopPrefixAtEnd(buf);
    this.held = buf.slice(buf.length - keep);
    return { text: buf.slice(0, buf.length - keep), stopped: false };
  }

  /** The text held back, once no more text will come. */
  flush(): string {
    const t = this.held;
    this.held = "";
    return t;
  }

  private longestStopPrefixAtEnd(buf: string): number {
    let keep = 0;
    for (const s of this.stops) {
      for (let k = Math.min(s.length - 1, buf.length); k > keep; k--) {
        if (buf.endsWith(s.slice(0, k))) {
          keep = k;
          break;
        }
      }
    }
    return keep;
  }
}
