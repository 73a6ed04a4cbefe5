import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { sameSecret } from "../src/http/auth.ts";

describe("envd sameSecret", () => {
  test("equal only when every character is", () => {
    const secret = "0123456789abcdef0123456789abcdef";
    assert.equal(sameSecret(secret, secret), true);
    assert.equal(sameSecret("", ""), true);
    assert.equal(sameSecret("ключ-é", "ключ-é"), true);
    for (let i = 0; i < secret.length; i++) {
      const other = secret.slice(0, i) + (secret[i] === "x" ? "y" : "x") + secret.slice(i + 1);
      assert.equal(sameSecret(other, secret), false, `differs at ${i}`);
    }
    assert.equal(sameSecret(secret.slice(1), secret), false);
    assert.equal(sameSecret(secret + "0", secret), false);
    assert.equal(sameSecret("", secret), false);
    assert.equal(sameSecret("ключ-e", "ключ-é"), false);
  });
});
