import createClient, { type Client } from "openapi-fetch";
import { errorFromBody, unreachable } from "./errors.ts";
import type { components, paths } from "./gen/openapi.d.ts";

export type Template = components["schemas"]["Template"];

export interface ConnectOptions {
  /** The control plane's base URL, e.g. http://127.0.0.1:8080 (a trailing /v1 is dropped). Default: $WRENN_API_URL. */
  apiUrl?: string;
  /** An API key (sent as X-API-Key). Default: $WRENN_API_KEY. */
  apiKey?: string;
  /** A `fetch` to use instead of the global one (proxies, tests). */
  fetch?: typeof fetch;
}

/** The answer of an openapi-fetch call: data on success, the error body otherwise. */
interface Answer<T> {
  data?: T;
  error?: unknown;
  response: Response;
}

/**
 * A connection to one Wrenn control plane with one credential. Cheap to make;
 * sandboxes and templates are reached through it.
 */
export class Wrenn {
  readonly apiUrl: string;
  readonly #apiKey: string;
  readonly #fetch: typeof fetch;
  /** The typed openapi-fetch client, for routes the ergonomic layer does not cover. */
  readonly api: Client<paths>;

  private constructor(apiUrl: string, apiKey: string, fetchImpl: typeof fetch) {
    this.apiUrl = apiUrl;
    this.#apiKey = apiKey;
    this.#fetch = fetchImpl;
    this.api = createClient<paths>({ baseUrl: apiUrl, fetch: (req) => this.fetch(req) });
  }

  static connect(options: ConnectOptions = {}): Wrenn {
    const env = globalThis.process?.env ?? {};
    const rawUrl = options.apiUrl ?? env.WRENN_API_URL;
    const apiKey = options.apiKey ?? env.WRENN_API_KEY;
    if (!rawUrl) throw new TypeError("Wrenn.connect needs apiUrl (or WRENN_API_URL)");
    if (!apiKey) throw new TypeError("Wrenn.connect needs apiKey (or WRENN_API_KEY)");
    let url: URL;
    try {
      url = new URL(rawUrl);
    } catch {
      throw new TypeError(`apiUrl is not a URL: '${rawUrl}'`);
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new TypeError(`apiUrl must be http(s), got '${rawUrl}'`);
    }
    const base = url.toString().replace(/\/+$/, "").replace(/\/v1$/, "");
    return new Wrenn(base, apiKey, options.fetch ?? globalThis.fetch.bind(globalThis));
  }

  /** The credential headers every call carries. */
  get headers(): Record<string, string> {
    return { "x-api-key": this.#apiKey };
  }

  /** The API key, for the exec WebSocket's handshake. */
  get apiKey(): string {
    return this.#apiKey;
  }

  /** fetch with the credential added and network failures turned into UnavailableError. */
  async fetch(input: Request | string, init?: RequestInit): Promise<Response> {
    const req = typeof input === "string" ? new Request(`${this.apiUrl}${input}`, init) : input;
    req.headers.set("x-api-key", this.#apiKey);
    try {
      return await this.#fetch(req);
    } catch (err) {
      if ((err as Error)?.name === "AbortError") throw err;
      throw unreachable(this.apiUrl, err);
    }
  }

  /** The data of a typed call, or its typed error. */
  async call<T>(pending: Promise<Answer<T>>): Promise<T> {
    const { data, error, response } = await pending;
    if (!response.ok) throw errorFromBody(response.status, error);
    return data as T;
  }

  /** Templates the team can create sandboxes from: its snapshots and the platform's base images. */
  async listTemplates(options: { type?: "base" | "snapshot" } = {}): Promise<Template[]> {
    const query = options.type ? { type: options.type } : {};
    return this.call(this.api.GET("/v1/snapshots", { params: { query } }));
  }

  /** Deletes one of the team's snapshot templates. */
  async deleteTemplate(name: string): Promise<void> {
    await this.call(this.api.DELETE("/v1/snapshots/{name}", { params: { path: { name } } }));
  }
}
