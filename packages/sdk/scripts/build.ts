import { execFileSync } from "node:child_process";
import { cpSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** `npm run build -w packages/sdk`: dist/ with JavaScript and declarations, ready to publish. */
const root = dirname(dirname(fileURLToPath(import.meta.url)));
rmSync(join(root, "dist"), { recursive: true, force: true });
const tsc = join(root, "..", "..", "node_modules", ".bin", "tsc");
execFileSync(tsc, ["-p", join(root, "tsconfig.build.json")], { stdio: "inherit" });
// tsc emits no copy of hand-kept or generated .d.ts files; the declarations import this one.
mkdirSync(join(root, "dist", "gen"), { recursive: true });
cpSync(join(root, "src", "gen", "openapi.d.ts"), join(root, "dist", "gen", "openapi.d.ts"));
