// The longest prompt text worth tokenizing. Tokenizing is synchronous and takes
// seconds for a few MB, stalling every stream; but no token covers more than the
// longest string in the vocabulary, so text longer than context x that length
// cannot fit and is refused before the tokenizer sees it.
import { readFileSync } from "node:fs";
import { join } from "node:path";

/** Normalizers (NFC, ...) may merge a few characters into one; stay clear of them. */
const NORMALIZATION_SLACK = 4;

export function maxPromptChars(modelDir: string, maxContext: number): number {
  const tj = JSON.parse(readFileSync(join(modelDir, "tokenizer.json"), "utf8"));
  const vocab: unknown = tj.model?.vocab;
  const pieces = Array.isArray(vocab) ? vocab.map((p) => String(p[0])) : Object.keys(vocab ?? {});
  const added = (tj.added_tokens ?? []).map((t: { content: string }) => t.content);
  const longest = Math.max(1, ...[...pieces, ...added].map((s) => s.length));
  return maxContext * longest * NORMALIZATION_SLACK;
}
