import { test } from "node:test";
import assert from "node:assert/strict";
import { lookupUser, userFromAuthorization } from "../src/users.ts";
import { isWrennError } from "@wrenn/shared/errors.ts";

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
