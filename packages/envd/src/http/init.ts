import type { IncomingMessage } from "node:http";
import { messageOf, WrennError } from "@wrenn/shared/errors.ts";
import type { EnvdContext } from "../context.ts";
import { lookupUser } from "../users.ts";
import { syncClock } from "./clock.ts";
import { MAX_ENTROPY_BYTES, MIN_ENTROPY_BYTES, reseedKernelRandom } from "./entropy.ts";
import { isHostname, setHostname } from "./hostname.ts";

const MAX_BODY = 1 << 20;

/** POST /init as E2B's envd takes it (camelCase); every field is optional. */
export interface InitRequest {
  envVars?: Record<string, string>;
  accessToken?: string;
  /** The host's time, RFC 3339 (or unix milliseconds). */
  timestamp?: string | number;
  defaultUser?: string;
  defaultWorkdir?: string;
  /**
   * Random bytes from the host (base64 on the wire, decoded here) that envd
   * mixes into the guest kernel's pool before it answers: clones of one
   * memory snapshot must not share /dev/urandom. Wrenn's own; E2B's envd
   * has no such field.
   */
  entropy?: Uint8Array;
  /**
   * The sandbox's name for itself (its id): a clone of a memory snapshot
   * would otherwise keep the name of the sandbox it was taken from. Wrenn's
   * own, as `entropy` is.
   */
  hostname?: string;
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY)
      throw new WrennError("invalid_argument", "/init body is larger than 1 MiB");
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

function bad(message: string): WrennError {
  return new WrennError("invalid_argument", message);
}

export function parseInit(text: string): InitRequest {
  if (text.trim() === "") return {};
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (err) {
    throw bad(`/init body is not JSON: ${messageOf(err)}`);
  }
  return checkInit(body);
}

/** /init's body, parsed: what of it is valid, or what is not. */
export function checkInit(body: unknown): InitRequest {
  if (typeof body !== "object" || body === null || Array.isArray(body))
    throw bad("/init body must be an object");
  const b = body as Record<string, unknown>;
  const out: InitRequest = {};
  if (b.envVars !== undefined && b.envVars !== null) {
    if (typeof b.envVars !== "object" || Array.isArray(b.envVars))
      throw bad("envVars must be an object of strings");
    for (const [k, v] of Object.entries(b.envVars)) {
      if (typeof v !== "string") throw bad(`envVars.${k} must be a string`);
    }
    out.envVars = b.envVars as Record<string, string>;
  }
  for (const key of ["accessToken", "defaultUser", "defaultWorkdir", "hostname"] as const) {
    const v = b[key];
    if (v === undefined || v === null) continue;
    if (typeof v !== "string") throw bad(`${key} must be a string`);
    out[key] = v;
  }
  if (out.hostname !== undefined && !isHostname(out.hostname)) {
    throw bad(
      `hostname '${out.hostname}' is not a valid host name: up to 64 characters, dot-separated labels of letters, digits and inner hyphens`,
    );
  }
  if (b.timestamp !== undefined && b.timestamp !== null) {
    if (typeof b.timestamp !== "string" && typeof b.timestamp !== "number") {
      throw bad("timestamp must be an RFC 3339 string");
    }
    if (Number.isNaN(new Date(b.timestamp).getTime()))
      throw bad(`timestamp '${b.timestamp}' is not a valid time`);
    out.timestamp = b.timestamp;
  }
  if (b.entropy !== undefined && b.entropy !== null) out.entropy = parseEntropy(b.entropy);
  return out;
}

function parseEntropy(value: unknown): Uint8Array {
  const expected = `${MIN_ENTROPY_BYTES} to ${MAX_ENTROPY_BYTES} random bytes in base64`;
  if (typeof value !== "string") throw bad(`entropy must be a string: ${expected}`);
  // Buffer.from skips what is not base64; a mangled value must not pass as fewer bytes.
  if (!BASE64.test(value)) throw bad(`entropy is not valid base64: expected ${expected}`);
  const bytes = Buffer.from(value, "base64");
  if (bytes.length < MIN_ENTROPY_BYTES || bytes.length > MAX_ENTROPY_BYTES) {
    throw bad(`entropy decodes to ${bytes.length} bytes: expected ${expected}`);
  }
  return bytes;
}

/** POST /init: the host's /init as E2B's envd takes it. */
export async function handleInit(req: IncomingMessage, ctx: EnvdContext): Promise<void> {
  await applyInit(parseInit(await readBody(req)), ctx);
}

/** Applies the host's /init (over HTTP or the control channel): after create and after every resume. */
export async function applyInit(init: InitRequest, ctx: EnvdContext): Promise<void> {
  const { state } = ctx;
  // Every claim sends the user in effect again: checked once is enough.
  if (
    init.defaultUser !== undefined &&
    init.defaultUser !== "" &&
    !(init.defaultUser === state.defaultUser && state.defaultUserChecked)
  ) {
    await lookupUser(init.defaultUser).catch((err: unknown) => {
      throw bad(`defaultUser: ${messageOf(err)}`);
    });
  }
  let reseeded = false;
  if (init.entropy !== undefined) {
    try {
      reseeded = reseedKernelRandom(init.entropy, ctx.log);
    } finally {
      // Only the kernel should keep them (the request's text is the GC's).
      init.entropy.fill(0);
    }
  }
  if (init.timestamp !== undefined) await syncClock(new Date(init.timestamp), ctx.log);
  const renamedFrom = init.hostname === undefined ? undefined : setHostname(init.hostname, ctx.log);
  if (init.envVars !== undefined) Object.assign(state.envVars, init.envVars);
  if (init.accessToken !== undefined)
    state.accessToken = init.accessToken === "" ? undefined : init.accessToken;
  if (init.defaultUser !== undefined && init.defaultUser !== "") {
    state.defaultUser = init.defaultUser;
    state.defaultUserChecked = true;
  }
  if (init.defaultWorkdir !== undefined && init.defaultWorkdir !== "")
    state.defaultWorkdir = init.defaultWorkdir;
  // Debug, not info: envd's log is the serial console, where a TCG guest
  // spends ≈ 10 µs a byte (this line, ≈ 230 bytes, cost 2–2.7 ms of a
  // claim's 10–12). The host agent logs each create and resume itself.
  ctx.log.debug(
    {
      envVars: Object.keys(init.envVars ?? {}).length,
      token: init.accessToken !== undefined,
      reseeded,
      user: state.defaultUser,
      ...(renamedFrom === undefined ? {} : { hostname: init.hostname, renamedFrom }),
    },
    "init",
  );
}
