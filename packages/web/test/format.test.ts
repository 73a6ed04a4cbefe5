import { test } from "node:test";
import assert from "node:assert/strict";
import { duration, timeLeft } from "../src/format.ts";

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
