// The playground in a real browser: headless Chromium (Debian's chromium, driven by
// puppeteer-core) loads the page from `kvc serve` under Bun and under Deno, sends a
// chat with kvcompress 8x, and once the stream ends the cache map shows layers x heads
// cells whose counts are what GET /v1/kv_cache/{id} returns, the achieved rate the
// stream's usage.kv_cache.compression_rate, and no console errors. A screenshot of
// the finished page is left in dist/test-artifacts/.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync } from "node:fs";
import puppeteer, { type Browser } from "puppeteer-core";
import { ROOT } from "../fixtures/helpers.ts";
import { RUNTIMES, serveNano, type ServerProcess } from "../fixtures/server-helpers.ts";

const CHROMIUM = process.env.KVC_CHROMIUM ?? "/usr/bin/chromium";
const ARTIFACTS = `${ROOT}/dist/test-artifacts`;

let browser: Browser;
beforeAll(async () => {
  // flags as a locked-down CI machine needs them: root (no sandbox), no GPU, no calls home
  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
  });
});
afterAll(() => browser?.close());

describe.each(RUNTIMES)("%s", (runtime) => {
  let server: ServerProcess;
  beforeAll(async () => {
    server = await serveNano(runtime);
  });
  afterAll(async () => expect(await server.stop()).toBe(0));

  test("a kvcompress 8x chat fills the cache map with the endpoint's numbers", async () => {
    const page = await browser.newPage();
    const problems: string[] = [];
    page.on("console", (m) => m.type() === "error" && problems.push(`console: ${m.text()}`));
    page.on("pageerror", (e) => problems.push(`page: ${(e as Error).message}`));
    await page.setViewport({ width: 1280, height: 900 });
    await page.goto(`${server.url}/`);
    await page.waitForSelector('[data-preset="kvcompress 4x"]');
    await page.click('[data-preset="kvcompress 4x"]');
    // 8x: the preset's method with the rate typed in
    await page.click("#kv-rate", { count: 3 });
    await page.type("#kv-rate", "8");
    await page.click("#max-tokens", { count: 3 });
    await page.type("#max-tokens", "32");
    await page.click("#temperature", { count: 3 });
    await page.type("#temperature", "0");
    await page.type("#prompt", "Tell me about the Union, the Congress, and the duties and taxes it shall lay and collect for the common defence.");
    await page.keyboard.press("Enter");
    // the stream's end (its usage line), then the map's last read
    await page.waitForSelector("#messages li.assistant .meta", { timeout: 120_000 });
    await page.waitForFunction(() => document.querySelector("#map-status")?.textContent?.startsWith("finished"), { timeout: 15_000 });

    const shown = await page.evaluate(() => {
      const li = document.querySelector<HTMLElement>("#messages li.assistant")!;
      return {
        text: li.firstChild?.textContent ?? "",
        id: li.dataset.responseId!,
        usageRate: Number(li.dataset.compressionRate),
        rate: Number(document.querySelector<HTMLElement>("#totals-rate")!.dataset.value),
        rateText: document.querySelector("#totals-rate")!.textContent,
        cells: [...document.querySelectorAll<HTMLElement>("#map .cell")].map((c) => ({ head: Number(c.dataset.head), kept: Number(c.dataset.kept), blocks: Number(c.dataset.blocks) })),
        strips: [document.querySelector<HTMLCanvasElement>("#strips")!.width, document.querySelector<HTMLCanvasElement>("#strips")!.height],
      };
    });
    expect(shown.text.length).toBeGreaterThan(0);
    expect(shown.id).toMatch(/^chatcmpl-/);

    const map = await (await fetch(`${server.url}/v1/kv_cache/${shown.id}`)).json();
    expect(map.status).toBe("finished");
    expect(map.compression).toMatchObject({ method: "kvcompress", rate: 8 });
    expect(shown.cells).toHaveLength(map.layers * map.kv_heads);
    expect(shown.cells.map((c) => c.kept)).toEqual(map.tokens_kept);
    expect(shown.cells.map((c) => c.blocks)).toEqual(map.blocks);
    expect(map.totals.evicted_tokens).toBeGreaterThan(0);
    // the rate the map shows is the stream's usage.kv_cache.compression_rate
    expect(shown.rate).toBe(shown.usageRate);
    expect(shown.rate).toBe(map.totals.compression_rate);
    expect(shown.rateText).toBe(`${map.totals.compression_rate.toFixed(2)}x`);
    expect(shown.strips).toEqual([map.positions.bins, map.layers * map.kv_heads]);

    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: `${ARTIFACTS}/playground-${runtime}.png` });
    expect(problems).toEqual([]);
    await page.close();
  });
});
