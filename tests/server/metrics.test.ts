// The Prometheus registry: text exposition format, cumulative histogram buckets,
// label escaping, and the checks that keep the output valid.
import { expect, test } from "bun:test";
import { Registry } from "../../src/serving/metrics.ts";

test("counters, gauges and histograms render in the text format", () => {
  const r = new Registry({ model_name: 'a "quoted"\\name' });
  const c = r.counter("vllm:prompt_tokens_total", "Prompt tokens.");
  let running = 3;
  r.gauge("vllm:num_requests_running", "Running.", () => running);
  const h = r.histogram("vllm:e2e_request_latency_seconds", "Latency.", [0.5, 1, 2]);
  c.inc(5);
  c.inc();
  running = 2;
  for (const x of [0.2, 0.7, 1, 3, NaN]) h.observe(x);
  const L = '{model_name="a \\"quoted\\"\\\\name"}';
  const Lle = (le: string) => `{model_name="a \\"quoted\\"\\\\name",le="${le}"}`;
  expect(r.render()).toBe(
    [
      "# HELP vllm:prompt_tokens_total Prompt tokens.",
      "# TYPE vllm:prompt_tokens_total counter",
      `vllm:prompt_tokens_total${L} 6`,
      "# HELP vllm:num_requests_running Running.",
      "# TYPE vllm:num_requests_running gauge",
      `vllm:num_requests_running${L} 2`,
      "# HELP vllm:e2e_request_latency_seconds Latency.",
      "# TYPE vllm:e2e_request_latency_seconds histogram",
      `vllm:e2e_request_latency_seconds_bucket${Lle("0.5")} 1`,
      `vllm:e2e_request_latency_seconds_bucket${Lle("1")} 3`,
      `vllm:e2e_request_latency_seconds_bucket${Lle("2")} 3`,
      `vllm:e2e_request_latency_seconds_bucket${Lle("+Inf")} 4`,
      `vllm:e2e_request_latency_seconds_sum${L} 4.9`,
      `vllm:e2e_request_latency_seconds_count${L} 4`,
      "",
    ].join("\n"),
  );
});

test("bad names, duplicates and negative increments are refused", () => {
  const r = new Registry();
  r.counter("ok_total", "x");
  expect(() => r.counter("ok_total", "x")).toThrow(/registered twice/);
  expect(() => r.counter("1bad", "x")).toThrow(/bad metric name/);
  expect(() => r.counter("has-dash", "x")).toThrow(/bad metric name/);
  expect(() => r.counter("c_total", "x").inc(-1)).toThrow(/only go up/);
  expect(r.render()).toBe("# HELP ok_total x\n# TYPE ok_total counter\nok_total 0\n# HELP c_total x\n# TYPE c_total counter\nc_total 0\n");
});
