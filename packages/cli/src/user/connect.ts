import { Wrenn } from "../../../sdk/src/index.ts";
import { resolveCredentials } from "./config.ts";

/** The SDK connection for user commands: env overrides, then the stored login. */
export async function connect(): Promise<Wrenn> {
  const creds = await resolveCredentials();
  return Wrenn.connect({ apiUrl: creds.api_url, apiKey: creds.api_key });
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}
