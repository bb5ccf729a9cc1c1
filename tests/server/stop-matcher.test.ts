// StopMatcher: stop strings found across pieces, their text never emitted, and
// nothing held back longer than a stop prefix needs.
import { expect, test } from "bun:test";
import { StopMatcher } from "../../src/serving/stop-matcher.ts";

/** Feeds pieces; returns the emitted text and whether a stop matched. */
function run(stops: string[], pieces: string[]): { text: string; stopped: boolean } {
  const m = new StopMatcher(stops);
  let text = "";
  for (const p of pieces) {
    const r = m.push(p);
    text += r.text;
    if (r.stopped) return { text, stopped: true };
  }
  return { text: text + m.flush(), stopped: false };
}

test("a stop inside one piece cuts the text before it", () => {
  expect(run(["\n\n"], ["Hello.\n\nUser: hi"])).toEqual({ text: "Hello.", stopped: true });
  expect(run(["stop"], ["stop here"])).toEqual({ text: "", stopped: true });
});

test("a stop split across pieces, even one character at a time, never leaks", () => {
  const text = "The answer is 42. User: what else?";
  for (let size = 1; size <= 5; size++) {
    const pieces = text.match(new RegExp(`[\\s\\S]{1,${size}}`, "g"))!;
    expect(run(["User:"], pieces)).toEqual({ text: "The answer is 42. ", stopped: true });
  }
});

test("held-back text comes out once it can no longer become a stop", () => {
  const m = new StopMatcher(["</end>"]);
  expect(m.push("a </e")).toEqual({ text: "a ", stopped: false });
  expect(m.push("nd")).toEqual({ text: "", stopped: false });
  expect(m.push("x")).toEqual({ text: "</endx", stopped: false });
  expect(m.push("</")).toEqual({ text: "", stopped: false });
  expect(m.flush()).toBe("</");
});

test("the earliest of several stops wins; no stops means nothing is held", () => {
  expect(run(["bb", "ab"], ["xa", "bb"])).toEqual({ text: "x", stopped: true });
  expect(run(["cd", "b"], ["abcd"])).toEqual({ text: "a", stopped: true });
  expect(run([], ["a", "b"])).toEqual({ text: "ab", stopped: false });
  const m = new StopMatcher([]);
  expect(m.push("text")).toEqual({ text: "text", stopped: false });
});

test("multi-code-unit characters pass whole", () => {
  expect(run(["🙂!"], ["hi 🙂", "?", "🙂", "!"])).toEqual({ text: "hi 🙂?", stopped: true });
  expect(run(["é"], ["caf", "é au lait"])).toEqual({ text: "caf", stopped: true });
});
