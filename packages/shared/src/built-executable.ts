import { accessSync, constants } from "node:fs";
import { createRequire } from "node:module";

/**
 * The path of an executable one of our packages builds at `npm install`
 * (node-gyp), by the specifier its package exports it under, resolved from
 * `from` (the caller's `import.meta.url`); null when it is not built or not
 * executable. Resolved by package name, so it is found the same from
 * sources and from a bundle with its node_modules beside it.
 */
export function builtExecutable(specifier: string, from: string): string | null {
  try {
    const file = createRequire(from).resolve(specifier);
    accessSync(file, constants.X_OK);
    return file;
  } catch {
    return null;
  }
}
