// Tokenizer, chat template and the streaming detokenizer.
import { expect, test } from "bun:test";
import { IncrementalDecoder, TextTokenizer } from "../../src/model/tokenizer.ts";
import { modelDir, readJsonFile, ROOT } from "../fixtures/helpers.ts";

const text = "Café — naïve 中文字符 and emoji 🦀🚀 ok: 1234567.";

for (const [name, dir] of [["kvc-nano (byte-level BPE)", `${ROOT}/models/kvc-nano`], ["stories260K (SentencePiece, byte fallback)", modelDir("stories260K")]]) {
  test(`${name}: streaming never splits a UTF-8 character`, () => {
    const tk = TextTokenizer.load(dir);
    const ids = tk.encode(text, false);
    const dec = new IncrementalDecoder(tk);
    const pieces = ids.map((id) => dec.push(id));
    pieces.push(dec.flush());
    for (const p of pieces) expect(p).not.toContain("\uFFFD");
    expect(pieces.join("")).toBe(tk.decode(ids));
    // a multi-byte character really was spread over several tokens
    expect(pieces.filter((p) => p === "").length).toBeGreaterThan(0);
  });
}

test("chat template renders and encodes as transformers did", () => {
  const tk = TextTokenizer.load(`${ROOT}/models/kvc-nano`);
  const golden = readJsonFile(`${modelDir("kvc-nano")}/golden.json`);
  const chat = golden.prompts.find((p: any) => p.kind === "chat");
  expect(tk.renderChat(chat.messages)).toBe(chat.rendered);
  expect(tk.encodeChat(chat.messages)).toEqual(chat.prompt_ids);
});

test("a model without a chat template says so", () => {
  const tk = TextTokenizer.load(modelDir("stories260K"));
  expect(() => tk.renderChat([{ role: "user", content: "hi" }])).toThrow(/no chat_template/);
});
