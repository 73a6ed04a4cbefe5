import { writeFile } from "node:fs/promises";
import { generateTypes } from "../test/openapi-types.ts";

/** `npm run generate -w packages/sdk`: rewrites src/gen/openapi.d.ts from the live API document. */
const target = new URL("../src/gen/openapi.d.ts", import.meta.url);
await writeFile(target, await generateTypes());
console.log(`wrote ${target.pathname}`);
