// Valibot's object schemas take arrays too (an array is an object to `typeof`);
// a request field that must be a JSON object should not.
import * as v from "valibot";

const isPlainObject = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null && !Array.isArray(x);

const jsonObject = (message?: string) => v.custom<Record<string, unknown>>(isPlainObject, (issue) => message ?? `Invalid type: Expected Object but received ${Array.isArray(issue.input) ? "Array" : issue.received}`);

/** `v.object` that refuses arrays; unknown keys are dropped. */
export function objectSchema<E extends v.ObjectEntries>(entries: E, message?: string) {
  return v.pipe(jsonObject(message), v.object(entries));
}

/** `v.strictObject` that refuses arrays; unknown keys are errors. */
export function strictObjectSchema<E extends v.ObjectEntries>(entries: E, message?: string) {
  return v.pipe(jsonObject(message), v.strictObject(entries));
}
