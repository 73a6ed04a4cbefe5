import { PGlite } from "@electric-sql/pglite";
import openapiTS, { astToString, type OpenAPI3 } from "openapi-typescript";
import { format } from "prettier";
import { createLogger } from "@wrenn/shared/log.ts";
import { startControlPlane } from "@wrenn/control-plane/server.ts";

const HEADER =
  "// Generated from the control plane's OpenAPI document by `npm run generate -w packages/sdk`.\n" +
  "// Do not edit: change the API's schemas and regenerate.\n\n";

/**
 * The SDK's types as they should be for the control plane in this tree: a
 * throwaway control plane (in-memory PGlite, port 0) serves its document,
 * openapi-typescript turns it into declarations, prettier formats them as the
 * repository's check expects. Only this script imports the control plane;
 * the SDK itself never does.
 */
export async function generateTypes(): Promise<string> {
  const cp = await startControlPlane({
    port: 0,
    pglite: await PGlite.create(),
    log: createLogger("sdk-generate", "silent"),
    reconcileIntervalMs: 3600_000,
  });
  try {
    const res = await fetch(`${cp.url}/openapi.json`);
    if (!res.ok) throw new Error(`the control plane's /openapi.json answered ${res.status}`);
    const doc = (await res.json()) as OpenAPI3;
    const ast = await openapiTS(doc);
    return await format(HEADER + astToString(ast), { parser: "typescript", printWidth: 100 });
  } finally {
    await cp.close();
  }
}
