// GGUF fixtures of the shared models (scripts/make-gguf-fixtures.ts), built on first use
// when scripts/setup.sh has not built them yet.
import { existsSync, mkdirSync } from "node:fs";
import { fixturePath, makeFixture, type FixtureType } from "../scripts/make-gguf-fixtures.ts";
import { modelDir, ROOT } from "./helpers.ts";

export const FIXTURE_DIR = `${ROOT}/fixtures/gguf`;

export function ggufFixture(model: string, type: FixtureType): string {
  const file = fixturePath(FIXTURE_DIR, model, type);
  if (!existsSync(file)) {
    mkdirSync(FIXTURE_DIR, { recursive: true });
    makeFixture(modelDir(model), file, type);
  }
  return file;
}
