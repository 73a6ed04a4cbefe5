/** The dashboard's view of the /v1 API: the session lives in localStorage. */

export interface Team {
  id: string;
  name: string;
  role: "owner" | "admin" | "member";
  created_at: string;
}
export interface User {
  id: string;
  email: string;
  name: string;
  is_admin: boolean;
  created_at: string;
}
export interface Session {
  token: string;
  expires_at: string;
  user: User;
  team: Team;
}
export interface Me {
  user: User | null;
  team_id: string;
  role: Team["role"];
  is_admin: boolean;
  teams: Team[];
}
export type SandboxStatus = "pending" | "running" | "paused" | "unknown" | "stopped" | "error";
export interface Sandbox {
  sandbox_id: string;
  template: string;
  status: SandboxStatus;
  vcpus: number;
  memory_mb: number;
  disk_size_mb: number;
  timeout_sec: number;
  host_id: string | null;
  metadata: Record<string, string>;
  /** When its lifetime ends (E2B's); null: paused once idle for timeout_sec. */
  end_at: string | null;
  error: string;
  created_at: string;
  updated_at: string;
}
export interface SandboxLogs {
  text: string;
  offset: number;
  next_offset: number;
}
export interface Template {
  name: string;
  type: "base" | "snapshot";
  team_id: string;
  host_id: string | null;
  vcpus: number;
  memory_mb: number;
  size_bytes: number;
  created_at: string;
}
export interface ExecResult {
  stdout: string;
  stderr: string;
  exit_code: number;
  duration_ms: number;
  encoding: "utf-8" | "base64";
  /** The host kept the first 16 MiB of the stream and dropped the rest. */
  stdout_truncated?: boolean;
  stderr_truncated?: boolean;
}
export interface DirEntry {
  name: string;
  path: string;
  type: "file" | "dir" | "symlink" | "other";
  size: number;
  modified_at: string;
}
export interface MetricSample {
  timestamp_ms: number;
  cpu_count: number;
  cpu_used_pct: number;
  mem_used_bytes: number;
  mem_total_bytes: number;
  disk_used_bytes: number;
  disk_total_bytes: number;
}
export interface ApiKey {
  id: string;
  name: string;
  prefix: string;
  created_at: string;
  last_used_at: string | null;
  revoked_at: string | null;
}
export interface Member {
  user_id: string;
  email: string;
  role: Team["role"];
  created_at: string;
}
export interface Invite {
  id: string;
  team_id: string;
  role: Team["role"];
  /** Only this address may use it; null: whoever has the token. */
  email: string | null;
  expires_at: string;
  created_at: string;
}
export interface Host {
  id: string;
  address: string;
  status: "ready" | "unreachable";
  vmm: string;
  storage: string;
  version: string;
  total_vcpus: number;
  total_memory_mb: number;
  free_disk_mb: number;
  /** What the host measured itself using at its last heartbeat; null: it does not measure. */
  usage: {
    cpu_busy_cores: number;
    memory_used_mb: number;
    vmm_memory_mb: number;
    measured_at: string;
  } | null;
  /** Warm pool entries ready on the host (idle VMs, counted in usage). */
  warm_sandboxes: number;
  last_seen_at: string | null;
  created_at: string;
}

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
  createSandbox: (body: {
    template: string;
    vcpus: number;
    memory_mb: number;
    disk_size_mb: number;
    timeout_sec: number;
    env_vars?: Record<string, string>;
    metadata?: Record<string, string>;
  }) => request<Sandbox>("POST", "/v1/sandboxes", body),
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
  hostToken: () =>
    request<{ token: string; expires_at: string }>("POST", "/v1/admin/host-tokens", {}),
  apiKeys: () => request<ApiKey[]>("GET", "/v1/api-keys"),
  createApiKey: (name: string) =>
    request<ApiKey & { key: string }>("POST", "/v1/api-keys", { name }),
  revokeApiKey: (id: string) => request<void>("DELETE", `/v1/api-keys/${id}`),
  members: (teamId: string) => request<Member[]>("GET", `/v1/teams/${teamId}/members`),
  addMember: (teamId: string, email: string, role: Member["role"]) =>
    request<Member>("POST", `/v1/teams/${teamId}/members`, { email, role }),
  removeMember: (teamId: string, userId: string) =>
    request<void>("DELETE", `/v1/teams/${teamId}/members/${userId}`),
  invites: () => request<Invite[]>("GET", "/v1/invites"),
  createInvite: (body: { role: Invite["role"]; ttl_sec: number; email?: string }) =>
    request<Invite & { token: string }>("POST", "/v1/invites", body),
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
): Promise<{ path: string; size: number }> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/v1/sandboxes/${id}/files/write`);
    for (const [k, v] of Object.entries(headers())) xhr.setRequestHeader(k, v);
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
        resolve(body as { path: string; size: number });
      } else {
        const e = (body as { error?: { code: string; message: string } } | undefined)?.error;
        reject(
          new ApiError(xhr.status, e?.code ?? "http_error", e?.message ?? `HTTP ${xhr.status}`),
        );
      }
    };
    const form = new FormData();
    form.append("path", path);
    form.append("file", file);
    xhr.send(form);
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
