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
}

export class TextTokenizer {
  private tk: Tokenizer;
  private template: Template | null;
  readonly bosToken: string | null;
  readonly eosToken: string | null;
  readonly specialIds: Set<number>;
  /** characters of the longest vocabulary or added piece (src/server/prompt-limit.ts) */
  readonly longestPiece: number;

  constructor(tokenizerJson: any, private config: any) {
    this.tk = new Tokenizer(tokenizerJson, config);
    const vocab: unknown = tokenizerJson.model?.vocab;
    const pieces = Array.isArray(vocab) ? vocab.map((p) => String(p[0])) : Object.keys(vocab ?? {});
    const added = (tokenizerJson.added_tokens ?? []).map((t: { content: string }) => t.content);
    this.longestPiece = pieces.concat(added).reduce((m: number, s: string) => Math.max(m, s.length), 1);
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

  /** Renders messages with the model's chat template (generation prompt appended). */
  renderChat(messages: ChatMessage[], addGenerationPrompt = true): string {
    if (!this.template) throw new Error("this model has no chat_template in tokenizer_config.json; send a plain prompt instead");
    return this.template.render({
      messages,
      add_generation_prompt: addGenerationPrompt,
      bos_token: this.bosToken ?? "",
      eos_token: this.eosToken ?? "",
    });
  }

  /** Chat ids as HF apply_chat_template(tokenize=True): the template carries BOS itself. */
  encodeChat(messages: ChatMessage[]): number[] {
    return this.encode(this.renderChat(messages), false);
  }
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
