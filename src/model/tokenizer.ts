// Tokenizer and chat template of an HF folder: tokenizer.json through
// @huggingface/tokenizers, chat_template through @huggingface/jinja.
import { Tokenizer } from "@huggingface/tokenizers";
import { Template } from "@huggingface/jinja";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { readJson } from "./config.ts";

export interface ChatMessage {
  role: string;
  content: string;
  /** an assistant turn's tool calls, a tool turn's call id, as OpenAI sends them */
  tool_calls?: unknown[];
  tool_call_id?: string;
}

/** How vocabulary pieces spell bytes (xgrammar's vocab types). */
export type VocabType = "byte_level" | "byte_fallback" | "raw";

export class TextTokenizer {
  private tk: Tokenizer;
  private template: Template | null;
  readonly bosToken: string | null;
  readonly eosToken: string | null;
  readonly specialIds: Set<number>;
  /** characters of the longest vocabulary or added piece (src/server/prompt-limit.ts) */
  readonly longestPiece: number;
  /** the vocabulary as written in tokenizer.json, by id (added tokens included; gaps "") */
  readonly pieces: string[];
  readonly vocabType: VocabType;
  /** SentencePiece-style: the normalizer puts "▁" before the text */
  readonly prependsSpace: boolean;

  constructor(tokenizerJson: any, private config: any) {
    this.tk = new Tokenizer(tokenizerJson, config);
    const vocab: unknown = tokenizerJson.model?.vocab;
    const pieces = Array.isArray(vocab) ? vocab.map((p) => String(p[0])) : Object.keys(vocab ?? {});
    const added = (tokenizerJson.added_tokens ?? []).map((t: { content: string }) => t.content);
    this.longestPiece = pieces.concat(added).reduce((m: number, s: string) => Math.max(m, s.length), 1);
    this.pieces = vocabById(tokenizerJson);
    const decoders = JSON.stringify(tokenizerJson.decoder ?? {});
    this.vocabType = decoders.includes('"ByteLevel"') ? "byte_level" : decoders.includes('"ByteFallback"') ? "byte_fallback" : "raw";
    this.prependsSpace = JSON.stringify(tokenizerJson.normalizer ?? {}).includes('"Prepend"') || JSON.stringify(tokenizerJson.pre_tokenizer ?? {}).includes('"Metaspace"');
    const tokText = (t: unknown) => (typeof t === "string" ? t : (t as { content?: string } | null)?.content ?? null);
    this.bosToken = tokText(config.bos_token);
    this.eosToken = tokText(config.eos_token);
    this.template = typeof config.chat_template === "string" ? new Template(config.chat_template) : null;
    this.specialIds = new Set([...this.tk.get_added_tokens_decoder()].filter(([, t]) => t.special).map(([id]) => id));
  }

  static load(dir: string): TextTokenizer {
    const tj = join(dir, "tokenizer.json");
    if (!existsSync(tj)) throw new Error(`missing file ${tj}: kvc reads HF fast tokenizers (tokenizer.json)`);
    const tcPath = join(dir, "tokenizer_config.json");
    const tc = existsSync(tcPath) ? readJson(tcPath) : {};
    return new TextTokenizer(readJson(tj), tc);
  }

  /** Text to ids; `special` adds what the post-processor adds (e.g. BOS), as HF does by default. */
  encode(text: string, special = true): number[] {
    return this.tk.encode(text, { add_special_tokens: special }).ids;
  }

  decode(ids: number[], skipSpecial = true): string {
    if (ids.length === 0) return "";
    return this.tk.decode(ids, { skip_special_tokens: skipSpecial });
  }

  get hasChatTemplate(): boolean {
    return this.template !== null;
  }

  /**
   * Renders messages with the model's chat template (generation prompt appended);
   * `tools` (OpenAI's tool objects) reach the template as transformers passes them.
   */
  renderChat(messages: ChatMessage[], addGenerationPrompt = true, tools?: unknown[]): string {
    if (!this.template) throw new Error("this model has no chat_template in tokenizer_config.json; send a plain prompt instead");
    return this.template.render({
      messages,
      add_generation_prompt: addGenerationPrompt,
      bos_token: this.bosToken ?? "",
      eos_token: this.eosToken ?? "",
      ...(tools?.length ? { tools } : {}),
    });
  }

  /** Chat ids as HF apply_chat_template(tokenize=True): the template carries BOS itself. */
  encodeChat(messages: ChatMessage[], tools?: unknown[]): number[] {
    return this.encode(this.renderChat(messages, true, tools), false);
  }

  /** The bytes token `id` stands for (OpenAI's logprobs `bytes`): its piece in the vocabulary's byte spelling. */
  tokenBytes(id: number): Uint8Array {
    const piece = this.pieces[id] ?? "";
    if (this.specialIds.has(id)) return UTF8.encode(piece);
    if (this.vocabType === "byte_level") return Uint8Array.from(piece, (ch) => BYTE_OF_CHAR.get(ch) ?? 0x3f);
    const byte = /^<0x([0-9A-Fa-f]{2})>$/.exec(piece);
    if (this.vocabType === "byte_fallback" && byte) return Uint8Array.of(parseInt(byte[1], 16));
    return UTF8.encode(piece.replaceAll("\u2581", " "));
  }
}

const UTF8 = new TextEncoder();

/** GPT-2's byte-level alphabet backwards: the printable character that spells each byte. */
const BYTE_OF_CHAR: Map<string, number> = (() => {
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const m = new Map<string, number>();
  let extra = 0;
  for (let b = 0; b < 256; b++) m.set(String.fromCodePoint(printable(b) ? b : 256 + extra++), b);
  return m;
})();

/** tokenizer.json's vocabulary and added tokens as one list by id. */
function vocabById(tj: any): string[] {
  const out: string[] = [];
  const vocab = tj.model?.vocab;
  const entries: [string, number][] = Array.isArray(vocab) ? vocab.map((p: [string, number], i: number) => [String(p[0]), i]) : Object.entries(vocab ?? {}).map(([k, v]) => [k, Number(v)]);
  for (const [piece, id] of entries) out[id] = piece;
  for (const t of tj.added_tokens ?? []) out[t.id] = t.content;
  for (let i = 0; i < out.length; i++) out[i] ??= "";
  return out;
}

/**
 * Streaming detokenizer: emits text only once it is stable, so a multi-byte UTF-8
 * character split over several byte tokens is never cut (the "prefix offset / read
 * offset" method): decode a window of recent ids and hold back while the tail is
 * an incomplete character (U+FFFD).
 */
export class IncrementalDecoder {
  private ids: number[] = [];
  private prefix = 0;
  private read = 0;

  constructor(private tk: TextTokenizer) {}

  push(id: number): string {
    this.ids.push(id);
    const prefixText = this.tk.decode(this.ids.slice(this.prefix, this.read));
    const text = this.tk.decode(this.ids.slice(this.prefix));
    if (text.length > prefixText.length && !text.endsWith("\uFFFD")) {
      const out = text.slice(prefixText.length);
      this.prefix = this.read;
      this.read = this.ids.length;
      return out;
    }
    return "";
  }

  /** Whatever is still held back (an incomplete character at the very end). */
  flush(): string {
    const prefixText = this.tk.decode(this.ids.slice(this.prefix, this.read));
    const text = this.tk.decode(this.ids.slice(this.prefix));
    this.prefix = this.read = this.ids.length;
    return text.slice(prefixText.length);
  }
}
