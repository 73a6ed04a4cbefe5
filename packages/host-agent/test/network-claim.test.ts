/**
 * One agent per network prefix per host: a live holder is refused, a dead
 * one's claim is taken over, and a release frees it.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { WrennError } from "@wrenn/shared/errors.ts";
import { claimPrefix } from "../src/network/claim.ts";

test("a network prefix is held by one live agent at a time", async () => {
  const dir = await mkdtemp(join(tmpdir(), "wrenn-claim-"));
  const other = spawn("sleep", ["60"]);
  try {
    // Another live process holds it: refused, with what to do.
    await writeFile(join(dir, "network-wcl.pid"), `${other.pid}\n`);
    const err = await claimPrefix("wcl", dir).catch((e: unknown) => e);
    assert.ok(err instanceof WrennError && err.code === "failed_precondition", String(err));
    assert.match(err.message, /--network-prefix/);

    // It dies: its claim is stale and taken over.
    const gone = once(other, "exit");
    other.kill("SIGKILL");
    await gone;
    const release = await claimPrefix("wcl", dir);
    assert.equal(
      (await readFile(join(dir, "network-wcl.pid"), "utf8")).trim(),
      String(process.pid),
    );
    // The same process may claim again (an agent restarted in-process).
    await claimPrefix("wcl", dir);
    await release();
    await assert.rejects(readFile(join(dir, "network-wcl.pid")), { code: "ENOENT" });
  } finally {
    other.kill("SIGKILL");
    await rm(dir, { recursive: true, force: true });
  }
});
