// Files the single binary carries (scripts/build.ts embeds them): the Dawn library
// and the default model live in Bun's embedded filesystem, where only Bun's own
// file reads see them. dlopen and the model loader want real files, so each set is
// written out once per build to the cache folder and used from there.
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";

const env = (name: string): string | undefined => (globalThis as any).process?.env?.[name] || undefined;

/** KVC_CACHE_DIR, else $XDG_CACHE_HOME/kvc, else ~/.cache/kvc, else a per-user folder in the temp dir. */
export function cacheDir(): string {
  const explicit = env("KVC_CACHE_DIR");
  if (explicit) return explicit;
  const xdg = env("XDG_CACHE_HOME");
  if (xdg) return join(xdg, "kvc");
  const home = env("HOME") ?? homedir();
  if (home && home !== "/" && existsSync(home)) return join(home, ".cache", "kvc");
  return join(tmpdir(), `kvc-${(globalThis as any).process?.getuid?.() ?? "user"}`);
}

/**
 * Writes `files` (name in the folder -> embedded path) to `<cache>/<folder>` unless a
 * complete copy is already there, and returns that folder. The copy is made under a
 * temporary name and renamed into place, so a process never sees half a folder and
 * two processes starting at once both end up with a whole one.
 */
export function writeOut(folder: string, files: Record<string, string>): string {
  const dir = join(cacheDir(), folder);
  const complete = join(dir, ".complete");
  if (existsSync(complete)) return dir;
  const tmp = `${dir}.${(globalThis as any).process?.pid ?? 0}.tmp`;
  try {
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { recursive: true });
    for (const [name, src] of Object.entries(files)) writeFileSync(join(tmp, name), readFileSync(src));
    writeFileSync(join(tmp, ".complete"), "");
    if (existsSync(dir) && !existsSync(complete)) rmSync(dir, { recursive: true, force: true });
    try {
      renameSync(tmp, dir);
    } catch (e) {
      if (!existsSync(complete)) throw e; // else another process put its copy there first
      rmSync(tmp, { recursive: true, force: true });
    }
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw new Error(`cannot write the binary's embedded files to ${dir} (${(e as Error).message}); set KVC_CACHE_DIR to a writable folder`);
  }
  return dir;
}
