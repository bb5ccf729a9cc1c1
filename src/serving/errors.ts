// Why serving refused or ended a request, typed: the HTTP layer words each in
// OpenAI's terms (routes/errors.ts), with the engine's PromptError beside them.
export { PromptError, type PromptProblem } from "../engine/prompt-check.ts";

export type ServingProblem =
  /** more requests waiting and running than the server queues */
  | { kind: "busy"; queued: number; maxQueue: number; retryAfterS: number }
  | { kind: "shutting_down" }
  /** the server shut down before the request finished */
  | { kind: "shut_down" }
  /** a step failed on this request */
  | { kind: "engine_failed"; message: string }
  /** prompt text longer than the context could hold, refused before tokenizing */
  | { kind: "text_too_long"; chars: number; maxChars: number; maxContext: number };

export class ServingError extends Error {
  constructor(readonly problem: ServingProblem) {
    super(describe(problem));
  }
}

function describe(p: ServingProblem): string {
  switch (p.kind) {
    case "busy":
      return `the server is busy: ${p.queued} requests are queued or running (--max-queue ${p.maxQueue}); retry in ${p.retryAfterS} s`;
    case "shutting_down":
      return "the server is shutting down";
    case "shut_down":
      return "the server shut down before this request finished";
    case "engine_failed":
      return `the engine failed on this request: ${p.message}`;
    case "text_too_long":
      return `the prompt has ${p.chars} characters, more than this model's maximum context length of ${p.maxContext} tokens can hold (at most ${p.maxChars} characters)`;
  }
}
