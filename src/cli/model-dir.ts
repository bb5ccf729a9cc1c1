// The embedded default model: kvc-nano, shipped inside the project.
import { fileURLToPath } from "node:url";

export function defaultModelDir(): string {
  return fileURLToPath(new URL("../../models/kvc-nano", import.meta.url));
}
