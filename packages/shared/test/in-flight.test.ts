import { test } from "node:test";
import assert from "node:assert/strict";
import { InFlight } from "../src/in-flight.ts";

test("in-flight reads: calls for one key share one read; other keys and later calls read again; a failure is not kept", async () => {
  const reads: string[] = [];
  const shared = new InFlight<string>();
  const read =
    (key: string, fail = false) =>
    () => {
      reads.push(key);
      return fail
        ? Promise.reject(new Error(`no ${key}`))
        : Promise.resolve(`${key}#${reads.length}`);
    };
  // Calls made in one turn of the event loop, as a burst's requests are.
  const together = await Promise.all([
    shared.run("a", read("a")),
    shared.run("a", read("a")),
    shared.run("b", read("b")),
    shared.run("a", read("a")),
  ]);
  assert.deepEqual(together, ["a#1", "a#1", "b#2", "a#1"]);
  assert.deepEqual(reads, ["a", "b"]);

  // One that comes after the read was answered reads again.
  assert.equal(await shared.run("a", read("a")), "a#3");

  const failed = await Promise.allSettled([
    shared.run("c", read("c", true)),
    shared.run("c", read("c")),
  ]);
  assert.deepEqual(
    failed.map((r) => (r.status === "rejected" ? String(r.reason) : r.value)),
    ["Error: no c", "Error: no c"],
  );
  assert.equal(await shared.run("c", read("c")), "c#5", "the failure was not kept");
});
