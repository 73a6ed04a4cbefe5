import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { lookupUser, userFromAuthorization } from "../src/users.ts";
import { isWrennError } from "@wrenn/shared/errors.ts";
import { runCommand } from "@wrenn/shared/command.ts";
import { tempDir, tempUser } from "./filesystem-fixtures.ts";

test("lookupUser reads uid, gid, home and shell from /etc/passwd", async () => {
  const root = await lookupUser("root");
  assert.equal(root.uid, 0);
  assert.equal(root.gid, 0);
  assert.equal(root.home, "/root");
  assert.ok(root.groups.includes(0));
});

test("lookupUser refuses an unknown user with unauthenticated", async () => {
  await assert.rejects(lookupUser("no-such-user-wrenn"), (err) =>
    isWrennError(err, "unauthenticated"),
  );
});

test("userFromAuthorization decodes Basic base64(user:) and falls back to the default", () => {
  const header = `Basic ${Buffer.from("alice:").toString("base64")}`;
  assert.equal(userFromAuthorization(header, "user"), "alice");
  assert.equal(userFromAuthorization(null, "user"), "user");
  assert.throws(() => userFromAuthorization("Bearer x", "user"), /Basic/);
});

test("lookupUser sees accounts and group memberships changed after an earlier lookup", async (t) => {
  if (process.getuid?.() !== 0) {
    t.skip("needs root for useradd");
    return;
  }
  const parent = await tempDir(t, "wrenn-users-");
  await lookupUser("root");
  const user = await tempUser(t, parent);
  const seen = await lookupUser(user.name);
  assert.equal(seen.uid, user.uid);
  assert.deepEqual(seen.groups, [user.gid]);
  // usermod rewrites /etc/group in place of the old one: the lookup must notice.
  const group = `wgrp${process.pid % 100000}`;
  await runCommand("groupadd", [group]);
  t.after(() => runCommand("groupdel", [group]));
  await runCommand("usermod", ["-aG", group, user.name]);
  const gid = Number(
    (await readFile("/etc/group", "utf8"))
      .split("\n")
      .find((l) => l.startsWith(`${group}:`))
      ?.split(":")[2],
  );
  assert.deepEqual((await lookupUser(user.name)).groups, [user.gid, gid]);
});
