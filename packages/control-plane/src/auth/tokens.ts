import { createHash, randomBytes } from "node:crypto";

/**
 * API keys are issued as `e2b_` + 40 hex digits (160 random bits), the shape
 * E2B's SDKs accept (older ones refuse anything but `^e2b_[0-9a-f]+$`); keys
 * issued before that, `wrn_` + 32 hex digits, keep working. Random enough that
 * a fast hash is enough to store them.
 */
export const API_KEY_PATTERN = /^(e2b_[0-9a-f]{40}|wrn_[0-9a-f]{32})$/;

/** What an API key starts with, either kind: tells a key from a session token. */
export const API_KEY_PREFIXES = ["e2b_", "wrn_"] as const;

export function newApiKey(): { key: string; prefix: string; hash: string } {
  const key = `e2b_${randomBytes(20).toString("hex")}`;
  return { key, prefix: key.slice(0, 12), hash: sha256(key) };
}

/** One-time host registration tokens, host secrets and team invites: random, stored hashed like API keys. */
export function newSecret(kind: "wrh" | "wrs" | "wri"): { value: string; hash: string } {
  const value = `${kind}_${randomBytes(24).toString("hex")}`;
  return { value, hash: sha256(value) };
}

export function sha256(value: string): string {
  return createHash("sha256").update(value).digest("hex");
}

const ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789";

/** Sandbox ids: lowercase letters and digits only, so they fit host names and file names. */
export function newSandboxId(): string {
  const bytes = randomBytes(20);
  let id = "";
  // 252 = 7 * 36: reject the tail so every character is equally likely.
  for (const b of bytes) if (b < 252 && id.length < 16) id += ID_ALPHABET[b % 36];
  return id.length === 16 ? id : newSandboxId();
}
