import { test } from "node:test";
import assert from "node:assert/strict";
import { age, duration, timeLeft, until } from "../src/format.ts";

test(
  "time left: a countdown to the end time, the idle timeout without one",
  { timeout: 5000 },
  () => {
    const now = Date.parse("2026-01-01T00:00:00Z");
    const at = (sec: number) => new Date(now + sec * 1000).toISOString();
    const running = { status: "running", timeout_sec: 300 };
    assert.equal(timeLeft({ ...running, end_at: at(125) }, now), "2:05");
    assert.equal(timeLeft({ ...running, end_at: at(9) }, now), "0:09");
    assert.equal(timeLeft({ ...running, end_at: at(2 * 3600 + 61) }, now), "2h 1m");
    assert.equal(timeLeft({ ...running, end_at: at(-3) }, now), "ending…");
    assert.equal(timeLeft({ ...running, end_at: null }, now), "idle 5m");
    assert.equal(timeLeft({ ...running, status: "paused", end_at: at(100) }, now), "—");
    assert.equal(duration(5400), "1.5h");
  },
);

test("age and until: how long since, how long to go", { timeout: 5000 }, () => {
  const now = Date.parse("2026-01-01T00:00:00Z");
  const at = (sec: number) => new Date(now + sec * 1000).toISOString();
  assert.equal(age(at(-90), now), "1m");
  assert.equal(until(at(7 * 86400), now), "7d");
  assert.equal(until(at(3600 + 120), now), "1h 2m");
  assert.equal(until(at(-5), now), "0s", "an expiry just passed is not negative");
});
