/**
 * Invite links: the token rides in the fragment, which browsers never send to
 * a server, so it stays out of access logs and Referer headers. No DOM here:
 * callers pass the location's parts.
 */

/** The link that opens the sign-up form with the invite filled in. */
export function inviteLink(token: string, origin: string): string {
  return `${origin}/dashboard/signup#invite=${encodeURIComponent(token)}`;
}

/** The invite token in a location (the fragment, or `?invite=` typed by hand), or "". */
export function inviteFromUrl(hash: string, search: string): string {
  const fromHash = new URLSearchParams(hash.replace(/^#/, "")).get("invite");
  return (fromHash ?? new URLSearchParams(search).get("invite") ?? "").trim();
}

/** The token itself, also when the whole invite link was pasted into the field. */
export function inviteToken(value: string): string {
  const v = value.trim();
  const at = v.indexOf("invite=");
  if (at < 0) return v;
  const raw = v.slice(at + "invite=".length).split(/[&#]/)[0] ?? "";
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}
