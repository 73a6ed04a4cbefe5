/**
 * One HTTP(S) request with a Host header of the test's choosing — what a
 * client sends to `https://<port>-<sandboxId>.<domain>` when DNS points that
 * name at the control plane — answered as status and text.
 */
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { isIP } from "node:net";

export interface RawRequest {
  host: string;
  method?: string;
  headers?: Record<string, string>;
  body?: Buffer;
  /** The CA to trust for HTTPS (a test's self-signed certificate). */
  ca?: string;
}

export function rawRequest(
  base: string,
  path: string,
  init: RawRequest,
): Promise<{ status: number; body: string }> {
  const url = new URL(base);
  const send = url.protocol === "https:" ? httpsRequest : httpRequest;
  const tls = init.ca ? { ca: init.ca, ...(isIP(init.host) ? {} : { servername: init.host }) } : {};
  return new Promise((resolve, reject) => {
    const req = send(
      {
        host: url.hostname,
        port: url.port,
        path,
        method: init.method ?? "GET",
        headers: { host: init.host, ...init.headers },
        ...tls,
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (d: string) => (body += d));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on("error", reject);
    req.end(init.body);
  });
}
