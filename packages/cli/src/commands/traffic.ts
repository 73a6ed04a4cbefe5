import { readFileSync } from "node:fs";
import type { ControlPlaneOptions } from "@wrenn/control-plane/server.ts";
import { WrennError, messageOf } from "@wrenn/shared/errors.ts";

/** The flags `wrenn up` and `wrenn control-plane` share for traffic into sandboxes. */
export const TRAFFIC_OPTIONS = {
  domain: { type: "string", default: process.env.WRENN_DOMAIN },
  "proxy-port": { type: "string" },
  "tls-cert": { type: "string" },
  "tls-key": { type: "string" },
} as const;

const DOMAIN =
  /^(?=.{1,200}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

export function readPem(flag: string, path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    throw new WrennError("invalid_argument", `${flag} ${path}: ${messageOf(err)}`);
  }
}

/** The control plane's traffic options from those flags, each checked. */
export function trafficOptions(values: {
  domain?: string | undefined;
  "proxy-port"?: string | undefined;
  "tls-cert"?: string | undefined;
  "tls-key"?: string | undefined;
}): Pick<ControlPlaneOptions, "domain" | "proxyPort" | "tls"> {
  const out: Pick<ControlPlaneOptions, "domain" | "proxyPort" | "tls"> = {};
  if (values.domain) {
    const domain = values.domain.toLowerCase();
    if (!DOMAIN.test(domain)) {
      throw new WrennError(
        "invalid_argument",
        `--domain must be a DNS name such as sandboxes.example.com, got '${values.domain}'`,
      );
    }
    out.domain = domain;
  }
  if (values["proxy-port"] !== undefined) {
    const port = Number(values["proxy-port"]);
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      throw new WrennError(
        "invalid_argument",
        `--proxy-port must be 0..65535, got '${values["proxy-port"]}'`,
      );
    }
    out.proxyPort = port;
  }
  const cert = values["tls-cert"];
  const key = values["tls-key"];
  if (Boolean(cert) !== Boolean(key)) {
    throw new WrennError("invalid_argument", "--tls-cert and --tls-key go together");
  }
  if (cert && key) out.tls = { cert: readPem("--tls-cert", cert), key: readPem("--tls-key", key) };
  return out;
}

/** What a user of the official `e2b` SDK exports to reach this control plane. */
export function e2bEnvLines(
  cp: { url: string; proxyUrl: string | null },
  apiKey: string,
  domain: string | undefined,
): string[] {
  const vars = [`E2B_API_URL=${cp.url}`, `E2B_API_KEY=${apiKey}`];
  if (domain) vars.push(`E2B_DOMAIN=${domain}`);
  // Without a domain (DNS *.domain → here, with TLS) the SDK reaches sandboxes through one URL.
  else vars.push(`E2B_SANDBOX_URL=${cp.proxyUrl ?? cp.url}`);
  return [`export ${vars.join(" ")}`];
}
