#!/usr/bin/env bun
// kvc: one entry, subcommands. `bun cli/main.ts <command>` or `deno run -A cli/main.ts <command>`.
import { generateCommand, GENERATE_HELP } from "./generate.ts";
import { serveCommand } from "./serve.ts";
import { benchCommand } from "./bench.ts";
import { evalCommand } from "./eval.ts";

const HELP = `kvc — LLM inference on WebGPU with a per-head compressed KV cache

usage: kvc <command> [options]

commands:
  generate   run one prompt and print the continuation
  serve      OpenAI-compatible HTTP server (streaming, per-request KV compression)
  bench      benchmarks on random-weight models at real shapes (JSON lines)
  eval       retrieval accuracy and perplexity under KV compression
  help       show this text

Run "kvc <command> --help" for a command's options.
`;

async function main(argv: string[]) {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case "generate":
      return generateCommand(rest);
    case "serve":
      return serveCommand(rest);
    case "bench":
      if (await benchCommand(rest)) throw new Error("some bench suites failed: see their error records");
      return;
    case "eval":
      return evalCommand(rest);
    case undefined:
    case "help":
    case "--help":
    case "-h":
      console.log(HELP);
      return;
    default:
      throw new Error(`unknown command "${cmd}"\n\n${HELP}`);
  }
}

const argv: string[] = (globalThis as any).Deno?.args ?? (globalThis as any).process.argv.slice(2);
try {
  await main(argv);
  // Dawn keeps native threads alive; exit explicitly once the work is done.
  (globalThis as any).process?.exit?.(0);
} catch (e) {
  console.error(`kvc: ${(e as Error).message}`);
  (globalThis as any).process?.exit?.(1);
}
void GENERATE_HELP;
