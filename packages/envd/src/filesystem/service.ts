import type { ServiceImpl } from "@connectrpc/connect";
import type { Filesystem } from "@wrenn/proto/filesystem/filesystem_pb.js";
import type { EnvdContext } from "../context.ts";

export function filesystemService(_ctx: EnvdContext): Partial<ServiceImpl<typeof Filesystem>> {
  return {};
}
