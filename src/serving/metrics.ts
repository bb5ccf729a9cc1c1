// A small Prometheus registry: counters, gauges read at scrape time, and
// histograms, rendered in the text exposition format (0.0.4). Written here
// because prom-client leans on Node internals (cluster, perf_hooks) and this
// must run unchanged on Bun and Deno.

export type Labels = Record<string, string>;

interface Metric {
  readonly name: string;
  readonly help: string;
  readonly type: "counter" | "gauge" | "histogram";
  /** sample lines, without HELP/TYPE */
  lines(): string[];
}

/** Label set as `{a="x",b="y"}`, values escaped as the format wants. */
function labelText(labels: Labels, extra?: [string, string]): string {
  const pairs = Object.entries(labels);
  if (extra) pairs.push(extra);
  if (!pairs.length) return "";
  const esc = (v: string) => v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
  return `{${pairs.map(([k, v]) => `${k}="${esc(v)}"`).join(",")}}`;
}

/** Go's float formatting for the special values; plain numbers otherwise. */
function num(x: number): string {
  if (x === Infinity) return "+Inf";
  if (x === -Infinity) return "-Inf";
  if (Number.isNaN(x)) return "NaN";
  return String(x);
}

export class Counter implements Metric {
  readonly type = "counter";
  private value = 0;
  constructor(readonly name: string, readonly help: string, private labels: Labels) {}
  inc(by = 1) {
    if (!(by >= 0)) throw new Error(`counter ${this.name} can only go up (got ${by})`);
    this.value += by;
  }
  lines() {
    return [`${this.name}${labelText(this.labels)} ${num(this.value)}`];
  }
}

/** A gauge whose value is computed when scraped (queue lengths, pool usage). */
export class Gauge implements Metric {
  readonly type = "gauge";
  constructor(readonly name: string, readonly help: string, private labels: Labels, private read: () => number) {}
  lines() {
    return [`${this.name}${labelText(this.labels)} ${num(this.read())}`];
  }
}

export class Histogram implements Metric {
  readonly type = "histogram";
  private counts: number[];
  private sum = 0;
  private count = 0;
  constructor(readonly name: string, readonly help: string, private labels: Labels, private buckets: number[]) {
    this.counts = new Array(buckets.length).fill(0);
  }
  observe(x: number) {
    if (!Number.isFinite(x)) return;
    for (let i = 0; i < this.buckets.length; i++) if (x <= this.buckets[i]) this.counts[i]++;
    this.sum += x;
    this.count++;
  }
  lines() {
    const out = this.buckets.map((le, i) => `${this.name}_bucket${labelText(this.labels, ["le", num(le)])} ${this.counts[i]}`);
    out.push(`${this.name}_bucket${labelText(this.labels, ["le", "+Inf"])} ${this.count}`);
    out.push(`${this.name}_sum${labelText(this.labels)} ${num(this.sum)}`);
    out.push(`${this.name}_count${labelText(this.labels)} ${this.count}`);
    return out;
  }
}

/** Holds metrics in registration order and renders them all. */
export class Registry {
  private metrics: Metric[] = [];
  static readonly contentType = "text/plain; version=0.0.4; charset=utf-8";

  constructor(private labels: Labels = {}) {}

  counter(name: string, help: string): Counter {
    return this.add(new Counter(name, help, this.labels));
  }
  gauge(name: string, help: string, read: () => number): Gauge {
    return this.add(new Gauge(name, help, this.labels, read));
  }
  histogram(name: string, help: string, buckets: number[]): Histogram {
    return this.add(new Histogram(name, help, this.labels, buckets));
  }

  render(): string {
    const out: string[] = [];
    for (const m of this.metrics) out.push(`# HELP ${m.name} ${m.help}`, `# TYPE ${m.name} ${m.type}`, ...m.lines());
    return out.join("\n") + "\n";
  }

  private add<M extends Metric>(m: M): M {
    if (!/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(m.name)) throw new Error(`bad metric name ${m.name}`);
    if (this.metrics.some((x) => x.name === m.name)) throw new Error(`metric ${m.name} registered twice`);
    this.metrics.push(m);
    return m;
  }
}
