// The --kv-* flags shared by generate, eval and serve, derived from the settings
// table (src/cache/compression.ts): parseArgs options, help lines and parsing.
import { budgetProblem, SETTABLE, settingFromText, withImpliedMethod, type CompressionOptions, type CompressionSetting } from "../src/cache/compression.ts";

/** A setting's flag as typed: `--kv-rate R`, `--kv-compress-once`. */
export const flagUsage = (s: CompressionSetting) => `--${s.flag}${s.arg ? ` ${s.arg}` : ""}`;

/** The help line's text: what it does, and its default where it has one worth saying. */
export function settingHelp(s: CompressionSetting): string {
  return s.default === null || s.default === false ? s.help : `${s.help} (default ${s.default})`;
}

export const KV_FLAG_OPTIONS = Object.fromEntries(SETTABLE.map((s) => [s.flag!, { type: s.arg ? ("string" as const) : ("boolean" as const) }]));

const width = Math.max(...SETTABLE.map((s) => flagUsage(s).length)) + 2;
export const KV_FLAGS_HELP = SETTABLE.map((s) => `  ${flagUsage(s).padEnd(width)}${settingHelp(s)}\n`).join("");

export function parseKvFlags(a: Record<string, string | boolean | undefined>): Partial<CompressionOptions> {
  const o: Record<string, unknown> = {};
  for (const s of SETTABLE) {
    const given = a[s.flag!];
    if (given === undefined || given === false) continue;
    const r = settingFromText(s, given === true ? "true" : given);
    if (!r.ok) throw new Error(`--${s.flag}: ${r.message}`);
    o[s.key] = r.value;
  }
  const asked = withImpliedMethod(o as Partial<CompressionOptions>);
  const problem = budgetProblem(asked, (s) => `--${s.flag}`);
  if (problem) throw new Error(`--kv-method ${problem}`);
  return asked;
}
