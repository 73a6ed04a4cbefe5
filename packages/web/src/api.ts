/** The dashboard's view of the /v1 API: the session lives in localStorage. */

import type { components } from "../../sdk/src/index.ts";

/** The API's own shapes, generated from its OpenAPI document (packages/sdk). */
type Schemas = components["schemas"];
export type Team = Schemas["Team"];
export type User = Schemas["User"];
export type Session = Schemas["Session"];
export type Me = Schemas["Me"];
export type Sandbox = Schemas["Sandbox"];
export type SandboxStatus = Sandbox["status"];
export type SandboxLogs = Schemas["SandboxLogs"];
export type Template = Schemas["Template"];
export type ExecResult = Schemas["ExecResult"];
export type DirEntry = Schemas["DirEntry"];
export type MetricSample = Schemas["MetricSample"];
export type ApiKey = Schemas["ApiKey"];
export type Member = Schemas["Member"];
export type Invite = Schemas["Invite"];
export type Host = Schemas["Host"];

/** An error the API answered (`{error: {code, message}}`) or a network failure. */
export class ApiError extends Error {
  readonly code: string;
  readonly status: number;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const TOKEN = "wrenn.session";
const TEAM = "wrenn.team";

export const session = {
  token: () => localStorage.getItem(TOKEN),
  team: () => localStorage.getItem(TEAM),
  set(token: string, teamId: string) {
    localStorage.setItem(TOKEN, token);
    localStorage.setItem(TEAM, teamId);
  },
  setTeam(teamId: string) {
    localStorage.setItem(TEAM, teamId);
  },
  clear() {
    localStorage.removeItem(TOKEN);
    localStorage.removeItem(TEAM);
  },
};

/** Listeners told when the API says the session is gone (expired or revoked). */
const expiredListeners = new Set<() => void>();
export function onSessionExpired(fn: () => void): () => void {
  expiredListeners.add(fn);
  return () => expiredListeners.delete(fn);
}

function headers(extra: Record<string, string> = {}): Record<string, string> {
  const h: Record<string, string> = { ...extra };
  const token = session.token();
  const team = session.team();
  if (token) h.authorization = `Bearer ${token}`;
  if (team) h["x-team-id"] = team;
  return h;
}

async function errorOf(res: Response): Promise<ApiError> {
  const text = await res.text().catch(() => "");
  try {
    const body = JSON.parse(text) as { error?: { code?: string; message?: string } };
    if (body.error?.message) {
      return new ApiError(res.status, body.error.code ?? "unknown", body.error.message);
    }
  } catch {
    // Not the API's JSON: fall through to the status line.
  }
  return new ApiError(res.status, "http_error", `${res.status} ${res.statusText}`.trim());
}

export async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      headers: headers(body === undefined ? {} : { "content-type": "application/json" }),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    throw new ApiError(0, "network", `cannot reach the control plane: ${(err as Error).message}`);
  }
  if (!res.ok) {
    const err = await errorOf(res);
    if (res.status === 401 && session.token()) for (const fn of expiredListeners) fn();
    throw err;
  }
  if (res.status === 204) return undefined as T;
  return (await res.json()) as T;
}

export const api = {
  signup: (email: string, password: string, name?: string, invite?: string) =>
    request<Session>("POST", "/v1/auth/signup", {
      email,
      password,
      ...(name ? { name } : {}),
      ...(invite ? { invite } : {}),
    }),
  login: (email: string, password: string) =>
    request<Session>("POST", "/v1/auth/login", { email, password }),
  me: () => request<Me>("GET", "/v1/me"),
  createTeam: (name: string) => request<Team>("POST", "/v1/teams", { name }),
  sandboxes: () => request<Sandbox[]>("GET", "/v1/sandboxes"),
  sandbox: (id: string) => request<Sandbox>("GET", `/v1/sandboxes/${id}`),
  createSandbox: (body: Schemas["CreateSandbox"]) =>
    request<Sandbox>("POST", "/v1/sandboxes", body),
  destroy: (id: string) => request<void>("DELETE", `/v1/sandboxes/${id}`),
  pause: (id: string) => request<Sandbox>("POST", `/v1/sandboxes/${id}/pause`),
  resume: (id: string, timeoutSec?: number) =>
    request<Sandbox>(
      "POST",
      `/v1/sandboxes/${id}/resume`,
      timeoutSec ? { timeout_sec: timeoutSec } : {},
    ),
  ping: (id: string) => request<void>("POST", `/v1/sandboxes/${id}/ping`),
  exec: (id: string, cmd: string, args: string[] = [], timeoutSec = 60, user?: string) =>
    request<ExecResult>("POST", `/v1/sandboxes/${id}/exec`, {
      cmd,
      args,
      timeout_sec: timeoutSec,
      ...(user ? { user } : {}),
    }),
  list: (id: string, path: string) =>
    request<DirEntry[]>("GET", `/v1/sandboxes/${id}/files/list?path=${encodeURIComponent(path)}`),
  mkdir: (id: string, path: string) =>
    request<void>("POST", `/v1/sandboxes/${id}/files/mkdir`, { path }),
  remove: (id: string, path: string) =>
    request<void>("POST", `/v1/sandboxes/${id}/files/remove`, { path }),
  metrics: (id: string) => request<MetricSample[]>("GET", `/v1/sandboxes/${id}/metrics`),
  logs: (id: string, offset?: number) =>
    request<SandboxLogs>(
      "GET",
      `/v1/sandboxes/${id}/logs${offset === undefined ? "" : `?offset=${offset}`}`,
    ),
  templates: () => request<Template[]>("GET", "/v1/snapshots"),
  snapshot: (sandboxId: string, name?: string) =>
    request<Template>("POST", "/v1/snapshots", {
      sandbox_id: sandboxId,
      ...(name ? { name } : {}),
    }),
  deleteTemplate: (name: string) =>
    request<void>("DELETE", `/v1/snapshots/${encodeURIComponent(name)}`),
  adminTemplates: () => request<Template[]>("GET", "/v1/admin/templates"),
  hosts: () => request<Host[]>("GET", "/v1/admin/hosts"),
  hostToken: () => request<Schemas["HostToken"]>("POST", "/v1/admin/host-tokens", {}),
  apiKeys: () => request<ApiKey[]>("GET", "/v1/api-keys"),
  createApiKey: (name: string) =>
    request<Schemas["CreatedApiKey"]>("POST", "/v1/api-keys", { name }),
  revokeApiKey: (id: string) => request<void>("DELETE", `/v1/api-keys/${id}`),
  members: (teamId: string) => request<Member[]>("GET", `/v1/teams/${teamId}/members`),
  addMember: (teamId: string, email: string, role: Member["role"]) =>
    request<Member>("POST", `/v1/teams/${teamId}/members`, { email, role }),
  removeMember: (teamId: string, userId: string) =>
    request<void>("DELETE", `/v1/teams/${teamId}/members/${userId}`),
  invites: () => request<Invite[]>("GET", "/v1/invites"),
  createInvite: (body: Schemas["CreateInvite"]) =>
    request<Schemas["CreatedInvite"]>("POST", "/v1/invites", body),
  revokeInvite: (id: string) => request<void>("DELETE", `/v1/invites/${id}`),
};

/**
 * Downloads a guest file through the API (POST /files/read) into a Blob.
 * `onProgress` gets bytes so far.
 */
export async function downloadFile(
  id: string,
  path: string,
  onProgress?: (bytes: number) => void,
): Promise<Blob> {
  const res = await fetch(`/v1/sandboxes/${id}/files/read`, {
    method: "POST",
    headers: headers({ "content-type": "application/json" }),
    body: JSON.stringify({ path }),
  });
  if (!res.ok || !res.body) throw await errorOf(res);
  const reader = res.body.getReader();
  const parts: Uint8Array<ArrayBuffer>[] = [];
  let n = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value);
    n += value.length;
    onProgress?.(n);
  }
  return new Blob(parts);
}

/** Uploads with XMLHttpRequest: fetch has no upload progress. */
export function uploadFile(
  id: string,
  path: string,
  file: Blob,
  onProgress: (sent: number, total: number) => void,
): Promise<Schemas["File"]> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/v1/sandboxes/${id}/files/write?${new URLSearchParams({ path })}`);
    for (const [k, v] of Object.entries(headers())) xhr.setRequestHeader(k, v);
    // The file as the body: the guest writes it without splitting a multipart form.
    xhr.setRequestHeader("content-type", "application/octet-stream");
    xhr.upload.onprogress = (e) => onProgress(e.loaded, e.total);
    xhr.onerror = () => reject(new ApiError(0, "network", "the upload failed: connection lost"));
    xhr.onload = () => {
      let body: unknown;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = undefined;
      }
      if (xhr.status >= 200 && xhr.status < 300) {
        resolve(body as Schemas["File"]);
      } else {
        const e = (body as { error?: { code: string; message: string } } | undefined)?.error;
        reject(
          new ApiError(xhr.status, e?.code ?? "http_error", e?.message ?? `HTTP ${xhr.status}`),
        );
      }
    };
    xhr.send(file);
  });
}

/** The terminal's WebSocket URL (browsers cannot set headers on a WebSocket). */
export function terminalUrl(id: string, opts: { pid: number; cols: number; rows: number }): string {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const q = new URLSearchParams({
    pid: String(opts.pid),
    cols: String(opts.cols),
    rows: String(opts.rows),
    token: session.token() ?? "",
    team_id: session.team() ?? "",
  });
  return `${proto}//${location.host}/v1/sandboxes/${id}/terminal?${q}`;
}
