/** Times as the dashboard shows them; plain functions, tested without a browser. */

export function age(iso: string, now = Date.now()): string {
  return span(Math.round((now - Date.parse(iso)) / 1000));
}

/** How long until `iso` (an expiry), as `age` says how long since. */
export function until(iso: string, now = Date.now()): string {
  return span(Math.round((Date.parse(iso) - now) / 1000));
}

function span(seconds: number): string {
  const s = Math.max(0, seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d`;
}

/**
 * What is left of a running sandbox's life: a countdown to its end time, or,
 * for one paused when idle (no end time), how long it may sit idle.
 */
export function timeLeft(
  s: { status: string; end_at: string | null; timeout_sec: number },
  now = Date.now(),
): string {
  if (s.status !== "running") return "—";
  if (s.end_at === null) return `idle ${duration(s.timeout_sec)}`;
  const left = Math.round((Date.parse(s.end_at) - now) / 1000);
  if (left <= 0) return "ending…";
  if (left < 3600) return `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`;
  return `${Math.floor(left / 3600)}h ${Math.floor((left % 3600) / 60)}m`;
}

export function duration(sec: number): string {
  if (sec < 60) return `${sec}s`;
  if (sec < 3600) return `${Math.round(sec / 60)}m`;
  return `${(sec / 3600).toFixed(sec % 3600 ? 1 : 0)}h`;
}
