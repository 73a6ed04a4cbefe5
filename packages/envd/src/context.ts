import type { Logger } from "@wrenn/shared/log.ts";
import type { EnvdState } from "./state.ts";

/** What every envd service and route gets: the mutable state and a logger. */
export interface EnvdContext {
  state: EnvdState;
  log: Logger;
}
