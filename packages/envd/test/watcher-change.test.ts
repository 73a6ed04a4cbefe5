/**
 * How the watcher names a "change" from the inode before and after it
 * (changeTypes): a chmod right after a write, seen by one stat, is both.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import type { Stats } from "node:fs";
import { EventType } from "@wrenn/proto/filesystem/filesystem_pb.js";
import { changeTypes } from "../src/filesystem/watcher.ts";

const before = { mtimeMs: 1000, ctimeMs: 1000, size: 3, mode: 0o100644, uid: 0, gid: 0 };
const stats = (over: Partial<typeof before> = {}) => ({ ...before, ...over }) as Stats;
const names = (types: EventType[]) => types.map((t) => EventType[t]);

test("a write, a chmod, or both in one stat", () => {
  const s = stats();
  assert.deepEqual(names(changeTypes(s, stats({ mtimeMs: 1004, ctimeMs: 1004, size: 6 }))), [
    "WRITE",
  ]);
  assert.deepEqual(names(changeTypes(s, stats({ mode: 0o100600, ctimeMs: 1004 }))), ["CHMOD"]);
  assert.deepEqual(names(changeTypes(s, stats({ uid: 1000, ctimeMs: 1004 }))), ["CHMOD"]);
  assert.deepEqual(names(changeTypes(s, stats({ ctimeMs: 1004 }))), ["CHMOD"]);
  // An append and a chmod within one clock tick, handled after both happened.
  assert.deepEqual(
    names(changeTypes(s, stats({ mtimeMs: 1004, ctimeMs: 1004, size: 6, mode: 0o100600 }))),
    ["WRITE", "CHMOD"],
  );
});

test("an event already folded into an earlier one of its batch is named by ctime against mtime", () => {
  const written = stats({ mtimeMs: 1004, ctimeMs: 1004, size: 6 });
  assert.deepEqual(names(changeTypes(written, written)), ["WRITE"]);
  const chmodded = stats({ mtimeMs: 1004, ctimeMs: 1008 });
  assert.deepEqual(names(changeTypes(chmodded, chmodded)), ["CHMOD"]);
});
