import type { ServiceImpl } from "@connectrpc/connect";
import type { Process } from "@wrenn/proto/process/process_pb.js";
import type { EnvdContext } from "../context.ts";

export function processService(_ctx: EnvdContext): Partial<ServiceImpl<typeof Process>> {
  return {};
}
