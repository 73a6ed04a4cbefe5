/**
 * What envd knows about its sandbox. Set at start from flags and later by the
 * host's POST /init (after create and after every resume).
 */
export interface EnvdState {
  /** Version reported to clients; the e2b SDK gates features on it. */
  readonly version: string;
  /** When set, every route requires X-Access-Token (or a signed /files URL). */
  accessToken: string | undefined;
  /** Environment given to every process, below the request's own envs. */
  envVars: Record<string, string>;
  /** User for requests that name none. */
  defaultUser: string;
  /** Whether /init found `defaultUser` in /etc/passwd (envd's own default is unchecked). */
  defaultUserChecked: boolean;
  /** Working directory for requests that name none (else the user's home). */
  defaultWorkdir: string | undefined;
}

export const ENVD_VERSION = "0.6.4";

export function initialState(defaultUser: string): EnvdState {
  return {
    version: ENVD_VERSION,
    accessToken: undefined,
    envVars: {},
    defaultUser,
    defaultUserChecked: false,
    defaultWorkdir: undefined,
  };
}
