// The longest prompt text worth tokenizing. Tokenizing is synchronous and takes
// seconds for a few MB, stalling every stream; but no token covers more than the
// longest string in the vocabulary, so text longer than context x that length
// cannot fit and is refused before the tokenizer sees it.
import type { TextTokenizer } from "../model/tokenizer.ts";

/** Normalizers (NFC, ...) may merge a few characters into one; stay clear of them. */
const NORMALIZATION_SLACK = 4;

export function maxPromptChars(tokenizer: TextTokenizer, maxContext: number): number {
  return maxContext * tokenizer.longestPiece * NORMALIZATION_SLACK;
}
