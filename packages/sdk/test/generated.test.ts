import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { generateTypes } from "./openapi-types.ts";

test(
  "src/gen/openapi.d.ts matches the control plane's OpenAPI document",
  { timeout: 120_000 },
  async () => {
    const committed = await readFile(new URL("../src/gen/openapi.d.ts", import.meta.url), "utf8");
    const fresh = await generateTypes();
    assert.ok(
      committed === fresh,
      "the SDK's generated types are stale: run `npm run generate -w packages/sdk` and commit src/gen/openapi.d.ts",
    );
  },
);
