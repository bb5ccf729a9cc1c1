// A small SVG line chart (no dependencies): series of (x, y) points on a log2 or
// linear x axis, with axis ticks, labels and a legend.

export interface Series {
  name: string;
  points: [number, number][];
  color: string;
  /** text above each point, by x */
  labels?: Record<number, string>;
}

export interface ChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  logX?: boolean;
  width?: number;
  height?: number;
  /** text under the title (GPU, runtime, commit) */
  subtitle?: string;
}

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/** Round tick steps (1, 2, 5 x 10^k) covering [0, max]. */
function ticks(max: number, n = 5): number[] {
  if (!(max > 0)) return [0, 1];
  const raw = max / n;
  const p = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw)!;
  const out: number[] = [];
  for (let v = 0; ; v += step) {
    out.push(Number(v.toPrecision(12)));
    if (v >= max) return out;
  }
}

export function lineChart(series: Series[], o: ChartOptions): string {
  const W = o.width ?? 820, H = o.height ?? 440;
  const m = { l: 78, r: 170, t: o.subtitle ? 62 : 44, b: 56 };
  const pw = W - m.l - m.r, ph = H - m.t - m.b;
  const all = series.flatMap((s) => s.points);
  const fx = (x: number) => (o.logX ? Math.log2(x) : x);
  const xs = all.map(([x]) => fx(x));
  const x0 = Math.min(...xs, o.logX ? 0 : 0), x1 = Math.max(...xs, x0 + 1);
  const yt = ticks(Math.max(...all.map(([, y]) => y), 0));
  const y1 = yt[yt.length - 1] || 1;
  const X = (x: number) => m.l + ((fx(x) - x0) / (x1 - x0)) * pw;
  const Y = (y: number) => m.t + ph - (y / y1) * ph;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${m.l}" y="22" font-size="15" font-weight="bold">${esc(o.title)}</text>`);
  if (o.subtitle) out.push(`<text x="${m.l}" y="40" fill="#555" font-size="11">${esc(o.subtitle.slice(0, Math.floor((W - m.l) / 6)))}</text>`);
  // grid and y ticks
  for (const v of yt) {
    out.push(`<line x1="${m.l}" x2="${m.l + pw}" y1="${Y(v)}" y2="${Y(v)}" stroke="#e4e4e4"/>`);
    out.push(`<text x="${m.l - 6}" y="${Y(v) + 4}" text-anchor="end">${v}</text>`);
  }
  // x ticks at the data's x values
  const xTicks = [...new Set(all.map(([x]) => x))].sort((a, b) => a - b);
  for (const v of xTicks) {
    out.push(`<line x1="${X(v)}" x2="${X(v)}" y1="${m.t + ph}" y2="${m.t + ph + 5}" stroke="#333"/>`);
    out.push(`<text x="${X(v)}" y="${m.t + ph + 19}" text-anchor="middle">${v}</text>`);
  }
  out.push(`<rect x="${m.l}" y="${m.t}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  out.push(`<text x="${m.l + pw / 2}" y="${H - 14}" text-anchor="middle">${esc(o.xLabel)}</text>`);
  out.push(`<text transform="translate(18 ${m.t + ph / 2}) rotate(-90)" text-anchor="middle">${esc(o.yLabel)}</text>`);
  series.forEach((s, i) => {
    const pts = [...s.points].sort((a, b) => a[0] - b[0]);
    if (pts.length > 1) out.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${pts.map(([x, y]) => `${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join(" ")}"/>`);
    for (const [x, y] of pts) {
      out.push(`<circle cx="${X(x).toFixed(1)}" cy="${Y(y).toFixed(1)}" r="3.5" fill="${s.color}"><title>${esc(`${s.name}: ${x} -> ${y}`)}</title></circle>`);
      const label = s.labels?.[x];
      if (label) out.push(`<text x="${X(x).toFixed(1)}" y="${(Y(y) - 8).toFixed(1)}" text-anchor="middle" fill="${s.color}" font-size="11">${esc(label)}</text>`);
    }
    const ly = m.t + 14 + i * 20;
    out.push(`<line x1="${m.l + pw + 14}" x2="${m.l + pw + 34}" y1="${ly - 4}" y2="${ly - 4}" stroke="${s.color}" stroke-width="2"/>`);
    out.push(`<text x="${m.l + pw + 40}" y="${ly}">${esc(s.name)}</text>`);
  });
  out.push("</svg>");
  return out.join("\n") + "\n";
}
