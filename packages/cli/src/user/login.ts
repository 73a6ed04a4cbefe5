import { createInterface } from "node:readline/promises";
import { Wrenn } from "../../../sdk/src/index.ts";
import { WrennError } from "@wrenn/shared/errors.ts";
import { readCredentials, removeCredentials, writeCredentials, credentialsPath } from "./config.ts";
import { printJson } from "./connect.ts";

/** The key from a prompt that does not echo it (terminal), or the first line of stdin (pipe). */
async function readKey(): Promise<string> {
  const stdin = process.stdin;
  if (!stdin.isTTY) {
    const rl = createInterface({ input: stdin });
    for await (const line of rl) {
      rl.close();
      return line.trim();
    }
    return "";
  }
  process.stderr.write("API key: ");
  stdin.setRawMode(true);
  stdin.resume();
  let key = "";
  try {
    for await (const chunk of stdin as AsyncIterable<Buffer>) {
      for (const ch of chunk.toString("utf8")) {
        if (ch === "\r" || ch === "\n") return key;
        if (ch === "\u0003") throw new WrennError("cancelled", "login cancelled");
        if (ch === "\u007f") key = key.slice(0, -1);
        else key += ch;
      }
    }
    return key;
  } finally {
    stdin.setRawMode(false);
    stdin.pause();
    process.stderr.write("\n");
  }
}

export async function login(options: {
  apiUrl?: string;
  apiKey?: string;
  json?: boolean;
}): Promise<void> {
  const stored = await readCredentials().catch(() => null);
  const apiUrl =
    options.apiUrl ?? process.env.WRENN_API_URL ?? stored?.api_url ?? "http://127.0.0.1:8080";
  const apiKey = (options.apiKey ?? process.env.WRENN_API_KEY ?? (await readKey())).trim();
  if (!apiKey) {
    throw new WrennError(
      "invalid_argument",
      "no API key: pass --api-key, pipe it on stdin, or type it at the prompt ('wrenn up' prints one)",
    );
  }
  let wrenn: Wrenn;
  try {
    wrenn = Wrenn.connect({ apiUrl, apiKey });
  } catch (err) {
    throw new WrennError("invalid_argument", `--api-url: ${(err as Error).message}`);
  }
  // Checked before it is stored: a typo is caught now, not at the next command.
  const me = await wrenn.call(wrenn.api.GET("/v1/me"));
  const path = await writeCredentials({ api_url: wrenn.apiUrl, api_key: apiKey });
  const team = me.teams.find((t) => t.id === me.team_id);
  if (options.json) {
    printJson({ api_url: wrenn.apiUrl, team_id: me.team_id, role: me.role, credentials: path });
    return;
  }
  process.stderr.write(
    `logged in to ${wrenn.apiUrl} (team ${team?.name ?? me.team_id}, ${me.role}); key stored in ${path}\n`,
  );
}

export async function logout(options: { json?: boolean }): Promise<void> {
  const removed = await removeCredentials();
  if (options.json) printJson({ logged_out: removed, credentials: credentialsPath() });
  else
    process.stderr.write(
      removed ? `logged out: removed ${credentialsPath()}\n` : "not logged in: nothing to remove\n",
    );
}
