import { chmod, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import { WrennError } from "@wrenn/shared/errors.ts";

/** What `wrenn login` stores: where the API is and the key to call it with. */
const Credentials = z.object({ api_url: z.url(), api_key: z.string().min(1) });
export type Credentials = z.infer<typeof Credentials>;

export function configDir(): string {
  const base = process.env.XDG_CONFIG_HOME || join(homedir(), ".config");
  return join(base, "wrenn");
}

export function credentialsPath(): string {
  return join(configDir(), "credentials.json");
}

export async function readCredentials(): Promise<Credentials | null> {
  let text: string;
  try {
    text = await readFile(credentialsPath(), "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw err;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = null;
  }
  const creds = Credentials.safeParse(parsed);
  if (!creds.success) {
    throw new WrennError(
      "failed_precondition",
      `${credentialsPath()} is not what 'wrenn login' writes: run 'wrenn login' again`,
    );
  }
  return creds.data;
}

/** Written with mode 0600 in a 0700 directory: the key is a secret. */
export async function writeCredentials(creds: Credentials): Promise<string> {
  const dir = configDir();
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const path = credentialsPath();
  await writeFile(path, `${JSON.stringify(creds, null, 2)}\n`, { mode: 0o600 });
  await chmod(path, 0o600); // an existing file keeps its old mode otherwise
  return path;
}

export async function removeCredentials(): Promise<boolean> {
  try {
    await rm(credentialsPath());
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw err;
  }
}

/** WRENN_API_URL and WRENN_API_KEY win over the stored login, each on its own. */
export async function resolveCredentials(): Promise<Credentials> {
  const envUrl = process.env.WRENN_API_URL;
  const envKey = process.env.WRENN_API_KEY;
  const stored = envUrl && envKey ? null : await readCredentials();
  const api_url = envUrl || stored?.api_url;
  const api_key = envKey || stored?.api_key;
  if (!api_url || !api_key) {
    throw new WrennError(
      "unauthenticated",
      "not logged in: run 'wrenn login' (or set WRENN_API_URL and WRENN_API_KEY)",
    );
  }
  return { api_url, api_key };
}
