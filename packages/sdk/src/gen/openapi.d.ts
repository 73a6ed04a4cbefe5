// Generated from the control plane's OpenAPI document by `npm run generate -w packages/sdk`.
// Do not edit: change the API's schemas and regenerate.

export interface paths {
  "/v1/auth/signup": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    get?: never;
    put?: never;
    /** Sign up: the first user becomes the platform's admin; later ones need an invite (they join its team) unless sign-up is open (then they get a team of their own) */
    post: {
      parameters: {
        query?: never;
        header?: never;
        path?: never;
        cookie?: never;
      };
      requestBody: {
        content: {
          "application/json": components["schemas"]["SignupRequest"];
        };
      };
      responses: {
        /** @description Signed up and logged in */
        201: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Session"];
          };
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Too many requests from this address (`rate_limited`; Retry-After gives the seconds to wait), or past one of the team's limits (`quota_exceeded`; the message names the limit and the numbers) */
        429: {
          headers: {
            /** @description Seconds until a rate-limited request may be tried again */
            "Retry-After"?: number;
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
      };
    };
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  "/v1/auth/login": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    get?: never;
    put?: never;
    /** Exchange email and password for a session token */
    post: {
      parameters: {
        query?: never;
        header?: never;
        path?: never;
        cookie?: never;
      };
      requestBody: {
        content: {
          "application/json": components["schemas"]["LoginRequest"];
        };
      };
      responses: {
        /** @description Logged in */
        200: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Session"];
          };
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Too many requests from this address (`rate_limited`; Retry-After gives the seconds to wait), or past one of the team's limits (`quota_exceeded`; the message names the limit and the numbers) */
        429: {
          headers: {
            /** @description Seconds until a rate-limited request may be tried again */
            "Retry-After"?: number;
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
      };
    };
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  "/v1/me": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    /** The caller: user, current team, role */
    get: {
      parameters: {
        query?: never;
        header?: never;
        path?: never;
        cookie?: never;
      };
      requestBody?: never;
      responses: {
        /** @description The caller */
        200: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Me"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
      };
    };
    put?: never;
    post?: never;
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  "/v1/teams": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    /** The teams the caller belongs to */
    get: {
      parameters: {
        query?: never;
        header?: never;
        path?: never;
        cookie?: never;
      };
      requestBody?: never;
      responses: {
        /** @description Teams */
        200: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Team"][];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
      };
    };
    put?: never;
    /** Create a team; the caller becomes its owner (select it with X-Team-Id) */
    post: {
      parameters: {
        query?: never;
        header?: never;
        path?: never;
        cookie?: never;
      };
      requestBody: {
        content: {
          "application/json": components["schemas"]["CreateTeam"];
        };
      };
      responses: {
        /** @description Created */
        201: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Team"];
          };
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Too many requests from this address (`rate_limited`; Retry-After gives the seconds to wait), or past one of the team's limits (`quota_exceeded`; the message names the limit and the numbers) */
        429: {
          headers: {
            /** @description Seconds until a rate-limited request may be tried again */
            "Retry-After"?: number;
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
      };
    };
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  "/v1/teams/{id}/members": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    /** Members of the caller's current team */
    get: {
      parameters: {
        query?: never;
        header?: never;
        path: {
          id: string;
        };
        cookie?: never;
      };
      requestBody?: never;
      responses: {
        /** @description Members */
        200: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Member"][];
          };
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Too many requests from this address (`rate_limited`; Retry-After gives the seconds to wait), or past one of the team's limits (`quota_exceeded`; the message names the limit and the numbers) */
        429: {
          headers: {
            /** @description Seconds until a rate-limited request may be tried again */
            "Retry-After"?: number;
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
      };
    };
    put?: never;
    /** Add an existing user to the team (owners and admins) */
    post: {
      parameters: {
        query?: never;
        header?: never;
        path: {
          id: string;
        };
        cookie?: never;
      };
      requestBody: {
        content: {
          "application/json": components["schemas"]["AddMember"];
        };
      };
      responses: {
        /** @description Added */
        201: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Member"];
          };
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The resource is not in a state that allows this */
        409: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Too many requests from this address (`rate_limited`; Retry-After gives the seconds to wait), or past one of the team's limits (`quota_exceeded`; the message names the limit and the numbers) */
        429: {
          headers: {
            /** @description Seconds until a rate-limited request may be tried again */
            "Retry-After"?: number;
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
      };
    };
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  "/v1/teams/{id}/members/{user_id}": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    get?: never;
    put?: never;
    post?: never;
    /** Remove a member (owners and admins; only owners remove owners) */
    delete: {
      parameters: {
        query?: never;
        header?: never;
        path: {
          id: string;
          user_id: string;
        };
        cookie?: never;
      };
      requestBody?: never;
      responses: {
        /** @description Done */
        204: {
          headers: {
            [name: string]: unknown;
          };
          content?: never;
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The resource is not in a state that allows this */
        409: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Too many requests from this address (`rate_limited`; Retry-After gives the seconds to wait), or past one of the team's limits (`quota_exceeded`; the message names the limit and the numbers) */
        429: {
          headers: {
            /** @description Seconds until a rate-limited request may be tried again */
            "Retry-After"?: number;
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
      };
    };
    options?: never;
    head?: never;
    /** Change a member's role (owners and admins; only owners make or unmake owners) */
    patch: {
      parameters: {
        query?: never;
        header?: never;
        path: {
          id: string;
          user_id: string;
        };
        cookie?: never;
      };
      requestBody: {
        content: {
          "application/json": components["schemas"]["UpdateMember"];
        };
      };
      responses: {
        /** @description Changed */
        200: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Member"];
          };
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The resource is not in a state that allows this */
        409: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Too many requests from this address (`rate_limited`; Retry-After gives the seconds to wait), or past one of the team's limits (`quota_exceeded`; the message names the limit and the numbers) */
        429: {
          headers: {
            /** @description Seconds until a rate-limited request may be tried again */
            "Retry-After"?: number;
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
      };
    };
    trace?: never;
  };
  "/v1/api-keys": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    /** The team's API keys (prefix only), with last-used times */
    get: {
      parameters: {
        query?: never;
        header?: never;
        path?: never;
        cookie?: never;
      };
      requestBody?: never;
      responses: {
        /** @description Keys */
        200: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["ApiKey"][];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
      };
    };
    put?: never;
    /** Create an API key for the caller's team; the key is shown only in this response */
    post: {
      parameters: {
        query?: never;
        header?: never;
        path?: never;
        cookie?: never;
      };
      requestBody: {
        content: {
          "application/json": components["schemas"]["CreateApiKey"];
        };
      };
      responses: {
        /** @description Created */
        201: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["CreatedApiKey"];
          };
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Too many requests from this address (`rate_limited`; Retry-After gives the seconds to wait), or past one of the team's limits (`quota_exceeded`; the message names the limit and the numbers) */
        429: {
          headers: {
            /** @description Seconds until a rate-limited request may be tried again */
            "Retry-After"?: number;
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
      };
    };
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  "/v1/api-keys/{id}": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    get?: never;
    put?: never;
    post?: never;
    /** Revoke an API key */
    delete: {
      parameters: {
        query?: never;
        header?: never;
        path: {
          id: string;
        };
        cookie?: never;
      };
      requestBody?: never;
      responses: {
        /** @description Done */
        204: {
          headers: {
            [name: string]: unknown;
          };
          content?: never;
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Too many requests from this address (`rate_limited`; Retry-After gives the seconds to wait), or past one of the team's limits (`quota_exceeded`; the message names the limit and the numbers) */
        429: {
          headers: {
            /** @description Seconds until a rate-limited request may be tried again */
            "Retry-After"?: number;
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
      };
    };
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  "/v1/invites": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    /** The team's unused, unexpired invites (owners and admins) */
    get: {
      parameters: {
        query?: never;
        header?: never;
        path?: never;
        cookie?: never;
      };
      requestBody?: never;
      responses: {
        /** @description Invites */
        200: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Invite"][];
          };
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Too many requests from this address (`rate_limited`; Retry-After gives the seconds to wait), or past one of the team's limits (`quota_exceeded`; the message names the limit and the numbers) */
        429: {
          headers: {
            /** @description Seconds until a rate-limited request may be tried again */
            "Retry-After"?: number;
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
      };
    };
    put?: never;
    /** Invite someone into the caller's team (owners and admins); they sign up with the token, once */
    post: {
      parameters: {
        query?: never;
        header?: never;
        path?: never;
        cookie?: never;
      };
      requestBody: {
        content: {
          "application/json": components["schemas"]["CreateInvite"];
        };
      };
      responses: {
        /** @description The invite, its token shown once */
        201: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["CreatedInvite"];
          };
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Too many requests from this address (`rate_limited`; Retry-After gives the seconds to wait), or past one of the team's limits (`quota_exceeded`; the message names the limit and the numbers) */
        429: {
          headers: {
            /** @description Seconds until a rate-limited request may be tried again */
            "Retry-After"?: number;
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
      };
    };
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  "/v1/invites/{id}": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    get?: never;
    put?: never;
    post?: never;
    /** Revoke an unused invite (owners and admins) */
    delete: {
      parameters: {
        query?: never;
        header?: never;
        path: {
          id: string;
        };
        cookie?: never;
      };
      requestBody?: never;
      responses: {
        /** @description Done */
        204: {
          headers: {
            [name: string]: unknown;
          };
          content?: never;
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Too many requests from this address (`rate_limited`; Retry-After gives the seconds to wait), or past one of the team's limits (`quota_exceeded`; the message names the limit and the numbers) */
        429: {
          headers: {
            /** @description Seconds until a rate-limited request may be tried again */
            "Retry-After"?: number;
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
      };
    };
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  "/v1/admin/teams/{id}/limits": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    /** A team's limits (its own or the default) and what it uses now */
    get: {
      parameters: {
        query?: never;
        header?: never;
        path: {
          id: string;
        };
        cookie?: never;
      };
      requestBody?: never;
      responses: {
        /** @description Limits and usage */
        200: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["TeamLimits"];
          };
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Too many requests from this address (`rate_limited`; Retry-After gives the seconds to wait), or past one of the team's limits (`quota_exceeded`; the message names the limit and the numbers) */
        429: {
          headers: {
            /** @description Seconds until a rate-limited request may be tried again */
            "Retry-After"?: number;
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
      };
    };
    /** Set a team's limits; creates and resumes past one answer 429 quota_exceeded naming it */
    put: {
      parameters: {
        query?: never;
        header?: never;
        path: {
          id: string;
        };
        cookie?: never;
      };
      requestBody: {
        content: {
          "application/json": components["schemas"]["SetTeamLimits"];
        };
      };
      responses: {
        /** @description The limits now */
        200: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["TeamLimits"];
          };
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Too many requests from this address (`rate_limited`; Retry-After gives the seconds to wait), or past one of the team's limits (`quota_exceeded`; the message names the limit and the numbers) */
        429: {
          headers: {
            /** @description Seconds until a rate-limited request may be tried again */
            "Retry-After"?: number;
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
      };
    };
    post?: never;
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  "/v1/sandboxes": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    /**
     * List the team's sandboxes that are pending, running or paused, newest first
     * @description Pages with `limit`; when more remain the X-Next-Token header carries the next page's token.
     */
    get: {
      parameters: {
        query?: {
          limit?: number;
          /** @description From the X-Next-Token header of the previous page */
          next_token?: string;
        };
        header?: never;
        path?: never;
        cookie?: never;
      };
      requestBody?: never;
      responses: {
        /** @description Sandboxes */
        200: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Sandbox"][];
          };
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Too many requests from this address (`rate_limited`; Retry-After gives the seconds to wait), or past one of the team's limits (`quota_exceeded`; the message names the limit and the numbers) */
        429: {
          headers: {
            /** @description Seconds until a rate-limited request may be tried again */
            "Retry-After"?: number;
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
      };
    };
    put?: never;
    /** Create a sandbox from a template on the least loaded host with room */
    post: {
      parameters: {
        query?: never;
        header?: never;
        path?: never;
        cookie?: never;
      };
      requestBody: {
        content: {
          "application/json": components["schemas"]["CreateSandbox"];
        };
      };
      responses: {
        /** @description Created and running */
        201: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Sandbox"];
          };
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The resource is not in a state that allows this */
        409: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Too many requests from this address (`rate_limited`; Retry-After gives the seconds to wait), or past one of the team's limits (`quota_exceeded`; the message names the limit and the numbers) */
        429: {
          headers: {
            /** @description Seconds until a rate-limited request may be tried again */
            "Retry-After"?: number;
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The host agent could not be reached or failed */
        502: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No host has room */
        503: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
      };
    };
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  "/v1/sandboxes/{id}": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    /** Get a sandbox */
    get: {
      parameters: {
        query?: never;
        header?: never;
        path: {
          id: string;
        };
        cookie?: never;
      };
      requestBody?: never;
      responses: {
        /** @description The sandbox */
        200: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Sandbox"];
          };
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Too many requests from this address (`rate_limited`; Retry-After gives the seconds to wait), or past one of the team's limits (`quota_exceeded`; the message names the limit and the numbers) */
        429: {
          headers: {
            /** @description Seconds until a rate-limited request may be tried again */
            "Retry-After"?: number;
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
      };
    };
    put?: never;
    post?: never;
    /** Destroy a sandbox */
    delete: {
      parameters: {
        query?: never;
        header?: never;
        path: {
          id: string;
        };
        cookie?: never;
      };
      requestBody?: never;
      responses: {
        /** @description Done */
        204: {
          headers: {
            [name: string]: unknown;
          };
          content?: never;
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The resource is not in a state that allows this */
        409: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Too many requests from this address (`rate_limited`; Retry-After gives the seconds to wait), or past one of the team's limits (`quota_exceeded`; the message names the limit and the numbers) */
        429: {
          headers: {
            /** @description Seconds until a rate-limited request may be tried again */
            "Retry-After"?: number;
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The host agent could not be reached or failed */
        502: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No host has room */
        503: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
      };
    };
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  "/v1/sandboxes/{id}/exec": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    get?: never;
    put?: never;
    /** Run a command to completion; output is base64 when it is not UTF-8 */
    post: {
      parameters: {
        query?: never;
        header?: never;
        path: {
          id: string;
        };
        cookie?: never;
      };
      requestBody: {
        content: {
          "application/json": components["schemas"]["Exec"];
        };
      };
      responses: {
        /** @description The command's result */
        200: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["ExecResult"];
          };
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The resource is not in a state that allows this */
        409: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Too many requests from this address (`rate_limited`; Retry-After gives the seconds to wait), or past one of the team's limits (`quota_exceeded`; the message names the limit and the numbers) */
        429: {
          headers: {
            /** @description Seconds until a rate-limited request may be tried again */
            "Retry-After"?: number;
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The host agent could not be reached or failed */
        502: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No host has room */
        503: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
      };
    };
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  "/v1/sandboxes/{id}/ping": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    get?: never;
    put?: never;
    /** Check the sandbox answers and keep it alive */
    post: {
      parameters: {
        query?: never;
        header?: never;
        path: {
          id: string;
        };
        cookie?: never;
      };
      requestBody?: never;
      responses: {
        /** @description Done */
        204: {
          headers: {
            [name: string]: unknown;
          };
          content?: never;
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The resource is not in a state that allows this */
        409: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Too many requests from this address (`rate_limited`; Retry-After gives the seconds to wait), or past one of the team's limits (`quota_exceeded`; the message names the limit and the numbers) */
        429: {
          headers: {
            /** @description Seconds until a rate-limited request may be tried again */
            "Retry-After"?: number;
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The host agent could not be reached or failed */
        502: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No host has room */
        503: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
      };
    };
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  "/v1/sandboxes/{id}/pause": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    get?: never;
    put?: never;
    /** Pause a running sandbox (memory and disk are kept) */
    post: {
      parameters: {
        query?: never;
        header?: never;
        path: {
          id: string;
        };
        cookie?: never;
      };
      requestBody?: never;
      responses: {
        /** @description Paused */
        200: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Sandbox"];
          };
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The resource is not in a state that allows this */
        409: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Too many requests from this address (`rate_limited`; Retry-After gives the seconds to wait), or past one of the team's limits (`quota_exceeded`; the message names the limit and the numbers) */
        429: {
          headers: {
            /** @description Seconds until a rate-limited request may be tried again */
            "Retry-After"?: number;
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The host agent could not be reached or failed */
        502: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No host has room */
        503: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
      };
    };
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  "/v1/sandboxes/{id}/resume": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    get?: never;
    put?: never;
    /** Resume a paused sandbox on the host that holds its snapshot */
    post: {
      parameters: {
        query?: never;
        header?: never;
        path: {
          id: string;
        };
        cookie?: never;
      };
      requestBody?: {
        content: {
          "application/json": components["schemas"]["Resume"];
        };
      };
      responses: {
        /** @description Running again */
        200: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Sandbox"];
          };
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The resource is not in a state that allows this */
        409: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Too many requests from this address (`rate_limited`; Retry-After gives the seconds to wait), or past one of the team's limits (`quota_exceeded`; the message names the limit and the numbers) */
        429: {
          headers: {
            /** @description Seconds until a rate-limited request may be tried again */
            "Retry-After"?: number;
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The host agent could not be reached or failed */
        502: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No host has room */
        503: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
      };
    };
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  "/v1/snapshots": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    /** Templates the team can use: its snapshots and the platform's base images */
    get: {
      parameters: {
        query?: {
          type?: "base" | "snapshot";
        };
        header?: never;
        path?: never;
        cookie?: never;
      };
      requestBody?: never;
      responses: {
        /** @description Templates */
        200: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Template"][];
          };
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Too many requests from this address (`rate_limited`; Retry-After gives the seconds to wait), or past one of the team's limits (`quota_exceeded`; the message names the limit and the numbers) */
        429: {
          headers: {
            /** @description Seconds until a rate-limited request may be tried again */
            "Retry-After"?: number;
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
      };
    };
    put?: never;
    /** Turn a sandbox into a template; the sandbox is paused and stays paused */
    post: {
      parameters: {
        query?: {
          overwrite?: "true" | "false";
        };
        header?: never;
        path?: never;
        cookie?: never;
      };
      requestBody: {
        content: {
          "application/json": components["schemas"]["CreateSnapshot"];
        };
      };
      responses: {
        /** @description The new template */
        201: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Template"];
          };
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The resource is not in a state that allows this */
        409: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Too many requests from this address (`rate_limited`; Retry-After gives the seconds to wait), or past one of the team's limits (`quota_exceeded`; the message names the limit and the numbers) */
        429: {
          headers: {
            /** @description Seconds until a rate-limited request may be tried again */
            "Retry-After"?: number;
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The host agent could not be reached or failed */
        502: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No host has room */
        503: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
      };
    };
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  "/v1/snapshots/{name}": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    get?: never;
    put?: never;
    post?: never;
    /** Delete one of the team's snapshot templates */
    delete: {
      parameters: {
        query?: never;
        header?: never;
        path: {
          name: string;
        };
        cookie?: never;
      };
      requestBody?: never;
      responses: {
        /** @description Done */
        204: {
          headers: {
            [name: string]: unknown;
          };
          content?: never;
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The resource is not in a state that allows this */
        409: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Too many requests from this address (`rate_limited`; Retry-After gives the seconds to wait), or past one of the team's limits (`quota_exceeded`; the message names the limit and the numbers) */
        429: {
          headers: {
            /** @description Seconds until a rate-limited request may be tried again */
            "Retry-After"?: number;
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The host agent could not be reached or failed */
        502: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No host has room */
        503: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
      };
    };
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  "/v1/sandboxes/{id}/files/write": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    get?: never;
    put?: never;
    /** Write a file: its bytes as application/octet-stream with ?path= (the fastest), or multipart with a `path` field, then a `file` part */
    post: {
      parameters: {
        query?: {
          path?: string;
          user?: string;
        };
        header?: never;
        path: {
          id: string;
        };
        cookie?: never;
      };
      requestBody: {
        content: {
          "application/octet-stream": string;
          "multipart/form-data": {
            path: string;
            user?: string;
            /** Format: binary */
            file: string;
          };
        };
      };
      responses: {
        /** @description Written */
        200: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["File"];
          };
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The resource is not in a state that allows this */
        409: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Too many requests from this address (`rate_limited`; Retry-After gives the seconds to wait), or past one of the team's limits (`quota_exceeded`; the message names the limit and the numbers) */
        429: {
          headers: {
            /** @description Seconds until a rate-limited request may be tried again */
            "Retry-After"?: number;
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The host agent could not be reached or failed */
        502: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No host has room */
        503: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
      };
    };
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  "/v1/sandboxes/{id}/files/read": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    get?: never;
    put?: never;
    /** Read a file; the bytes stream back as they are read */
    post: {
      parameters: {
        query?: never;
        header?: never;
        path: {
          id: string;
        };
        cookie?: never;
      };
      requestBody: {
        content: {
          "application/json": {
            path: string;
            user?: string;
          };
        };
      };
      responses: {
        /** @description The file's bytes */
        200: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/octet-stream": string;
          };
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The resource is not in a state that allows this */
        409: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Too many requests from this address (`rate_limited`; Retry-After gives the seconds to wait), or past one of the team's limits (`quota_exceeded`; the message names the limit and the numbers) */
        429: {
          headers: {
            /** @description Seconds until a rate-limited request may be tried again */
            "Retry-After"?: number;
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The host agent could not be reached or failed */
        502: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No host has room */
        503: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
      };
    };
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  "/v1/admin/host-tokens": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    get?: never;
    put?: never;
    /** Create a one-time token with which one host agent registers */
    post: {
      parameters: {
        query?: never;
        header?: never;
        path?: never;
        cookie?: never;
      };
      requestBody: {
        content: {
          "application/json": components["schemas"]["CreateHostToken"];
        };
      };
      responses: {
        /** @description The token, shown once */
        201: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["HostToken"];
          };
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Too many requests from this address (`rate_limited`; Retry-After gives the seconds to wait), or past one of the team's limits (`quota_exceeded`; the message names the limit and the numbers) */
        429: {
          headers: {
            /** @description Seconds until a rate-limited request may be tried again */
            "Retry-After"?: number;
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
      };
    };
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  "/v1/hosts/register": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    get?: never;
    put?: never;
    /** Called by a host agent: trade a one-time token for a host id and secret */
    post: {
      parameters: {
        query?: never;
        header?: never;
        path?: never;
        cookie?: never;
      };
      requestBody: {
        content: {
          "application/json": components["schemas"]["RegisterHost"];
        };
      };
      responses: {
        /** @description Registered */
        201: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["RegisteredHost"];
          };
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
      };
    };
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  "/v1/hosts/{id}/heartbeat": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    get?: never;
    put?: never;
    /** Called by a host agent with its capacity; Authorization: Bearer <host secret> */
    post: {
      parameters: {
        query?: never;
        header?: never;
        path: {
          id: string;
        };
        cookie?: never;
      };
      requestBody: {
        content: {
          "application/json": components["schemas"]["Heartbeat"];
        };
      };
      responses: {
        /** @description Done */
        204: {
          headers: {
            [name: string]: unknown;
          };
          content?: never;
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
      };
    };
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  "/v1/admin/hosts": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    /** All hosts with capacity and status */
    get: {
      parameters: {
        query?: never;
        header?: never;
        path?: never;
        cookie?: never;
      };
      requestBody?: never;
      responses: {
        /** @description Hosts */
        200: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Host"][];
          };
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Too many requests from this address (`rate_limited`; Retry-After gives the seconds to wait), or past one of the team's limits (`quota_exceeded`; the message names the limit and the numbers) */
        429: {
          headers: {
            /** @description Seconds until a rate-limited request may be tried again */
            "Retry-After"?: number;
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
      };
    };
    put?: never;
    post?: never;
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  "/v1/admin/hosts/{id}": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    get?: never;
    put?: never;
    post?: never;
    /** Forget a host (its sandboxes keep their rows, without a host) */
    delete: {
      parameters: {
        query?: never;
        header?: never;
        path: {
          id: string;
        };
        cookie?: never;
      };
      requestBody?: never;
      responses: {
        /** @description Done */
        204: {
          headers: {
            [name: string]: unknown;
          };
          content?: never;
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Too many requests from this address (`rate_limited`; Retry-After gives the seconds to wait), or past one of the team's limits (`quota_exceeded`; the message names the limit and the numbers) */
        429: {
          headers: {
            /** @description Seconds until a rate-limited request may be tried again */
            "Retry-After"?: number;
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
      };
    };
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  "/v1/admin/templates": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    /** Every team's templates */
    get: {
      parameters: {
        query?: never;
        header?: never;
        path?: never;
        cookie?: never;
      };
      requestBody?: never;
      responses: {
        /** @description Templates */
        200: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Template"][];
          };
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Too many requests from this address (`rate_limited`; Retry-After gives the seconds to wait), or past one of the team's limits (`quota_exceeded`; the message names the limit and the numbers) */
        429: {
          headers: {
            /** @description Seconds until a rate-limited request may be tried again */
            "Retry-After"?: number;
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
      };
    };
    put?: never;
    post?: never;
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  "/v1/sandboxes/{id}/files/list": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    /** List a directory in the sandbox: directories first, then by name */
    get: {
      parameters: {
        query: {
          path: string;
          user?: string;
        };
        header?: never;
        path: {
          id: string;
        };
        cookie?: never;
      };
      requestBody?: never;
      responses: {
        /** @description The directory's entries */
        200: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["DirEntry"][];
          };
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The resource is not in a state that allows this */
        409: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Too many requests from this address (`rate_limited`; Retry-After gives the seconds to wait), or past one of the team's limits (`quota_exceeded`; the message names the limit and the numbers) */
        429: {
          headers: {
            /** @description Seconds until a rate-limited request may be tried again */
            "Retry-After"?: number;
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The host agent could not be reached or failed */
        502: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No host has room */
        503: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
      };
    };
    put?: never;
    post?: never;
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  "/v1/sandboxes/{id}/files/mkdir": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    get?: never;
    put?: never;
    /** Create a directory (and its parents) in the sandbox */
    post: {
      parameters: {
        query?: never;
        header?: never;
        path: {
          id: string;
        };
        cookie?: never;
      };
      requestBody: {
        content: {
          "application/json": components["schemas"]["GuestPath"];
        };
      };
      responses: {
        /** @description Done */
        204: {
          headers: {
            [name: string]: unknown;
          };
          content?: never;
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The resource is not in a state that allows this */
        409: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Too many requests from this address (`rate_limited`; Retry-After gives the seconds to wait), or past one of the team's limits (`quota_exceeded`; the message names the limit and the numbers) */
        429: {
          headers: {
            /** @description Seconds until a rate-limited request may be tried again */
            "Retry-After"?: number;
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The host agent could not be reached or failed */
        502: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No host has room */
        503: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
      };
    };
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  "/v1/sandboxes/{id}/files/remove": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    get?: never;
    put?: never;
    /** Delete a file or a directory with everything in it */
    post: {
      parameters: {
        query?: never;
        header?: never;
        path: {
          id: string;
        };
        cookie?: never;
      };
      requestBody: {
        content: {
          "application/json": components["schemas"]["GuestPath"];
        };
      };
      responses: {
        /** @description Done */
        204: {
          headers: {
            [name: string]: unknown;
          };
          content?: never;
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The resource is not in a state that allows this */
        409: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Too many requests from this address (`rate_limited`; Retry-After gives the seconds to wait), or past one of the team's limits (`quota_exceeded`; the message names the limit and the numbers) */
        429: {
          headers: {
            /** @description Seconds until a rate-limited request may be tried again */
            "Retry-After"?: number;
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The host agent could not be reached or failed */
        502: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No host has room */
        503: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
      };
    };
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  "/v1/sandboxes/{id}/metrics": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    /** CPU, memory and disk samples of a running sandbox, oldest first */
    get: {
      parameters: {
        query?: {
          /** @description Only samples taken at or after this time (Unix milliseconds) */
          since_ms?: number | null;
        };
        header?: never;
        path: {
          id: string;
        };
        cookie?: never;
      };
      requestBody?: never;
      responses: {
        /** @description Samples */
        200: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["MetricSample"][];
          };
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The resource is not in a state that allows this */
        409: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Too many requests from this address (`rate_limited`; Retry-After gives the seconds to wait), or past one of the team's limits (`quota_exceeded`; the message names the limit and the numbers) */
        429: {
          headers: {
            /** @description Seconds until a rate-limited request may be tried again */
            "Retry-After"?: number;
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The host agent could not be reached or failed */
        502: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No host has room */
        503: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
      };
    };
    put?: never;
    post?: never;
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  "/v1/sandboxes/{id}/logs": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    /** The guest's console (kernel and envd output) of a running sandbox, by byte offset */
    get: {
      parameters: {
        query?: {
          /** @description Absolute byte offset (a previous answer's `next_offset`); absent: the oldest kept */
          offset?: number | null;
          /** @description Most bytes to return */
          limit?: number;
        };
        header?: never;
        path: {
          id: string;
        };
        cookie?: never;
      };
      requestBody?: never;
      responses: {
        /** @description Console text from `offset` */
        200: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["SandboxLogs"];
          };
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The resource is not in a state that allows this */
        409: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Too many requests from this address (`rate_limited`; Retry-After gives the seconds to wait), or past one of the team's limits (`quota_exceeded`; the message names the limit and the numbers) */
        429: {
          headers: {
            /** @description Seconds until a rate-limited request may be tried again */
            "Retry-After"?: number;
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The host agent could not be reached or failed */
        502: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No host has room */
        503: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
      };
    };
    put?: never;
    post?: never;
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  "/v1/sandboxes/{id}/terminal": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    /**
     * An interactive terminal (a PTY in the guest) over a WebSocket
     * @description Binary frames carry the terminal's bytes both ways. Text frames from the client are JSON `{"type":"resize","cols","rows"}`; from the server `{"type":"start","pid"}` first, then `{"type":"end","exit_code"}` when the shell exits or `{"type":"error","code","message"}`. The shell outlives the socket: reconnect with `?pid=` to reattach (after a reload or a pause and resume).
     */
    get: {
      parameters: {
        query?: {
          /** @description 0 (or absent) starts a login shell; a pid from an earlier `start` reattaches to it */
          pid?: number | null;
          cols?: number;
          rows?: number;
          user?: string;
          /** @description The session token (browsers cannot set headers) */
          token?: string;
          team_id?: string;
        };
        header?: never;
        path: {
          id: string;
        };
        cookie?: never;
      };
      requestBody?: never;
      responses: {
        /** @description Switching to the WebSocket protocol */
        101: {
          headers: {
            [name: string]: unknown;
          };
          content?: never;
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The resource is not in a state that allows this */
        409: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Too many requests from this address (`rate_limited`; Retry-After gives the seconds to wait), or past one of the team's limits (`quota_exceeded`; the message names the limit and the numbers) */
        429: {
          headers: {
            /** @description Seconds until a rate-limited request may be tried again */
            "Retry-After"?: number;
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The host agent could not be reached or failed */
        502: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No host has room */
        503: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
      };
    };
    put?: never;
    post?: never;
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  "/v2/sandboxes": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    /**
     * List the team's running and paused sandboxes, newest first by default
     * @description When more remain, the `x-next-token` header carries the next page's `nextToken`.
     */
    get: {
      parameters: {
        query?: {
          /** @description `key=value&k2=v2`, each key and value URL-encoded */
          metadata?: string;
          /** @description running, paused (comma-separated or repeated) */
          state?: string | string[];
          template?: string;
          startedAfter?: string;
          order?: "asc" | "desc";
          limit?: number;
          /** @description The previous page's `x-next-token` */
          nextToken?: string;
        };
        header?: never;
        path?: never;
        cookie?: never;
      };
      requestBody?: never;
      responses: {
        /** @description Sandboxes */
        200: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BListedSandbox"][];
          };
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The sandbox is not in a state that allows this */
        409: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The host agent could not be reached or failed */
        502: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description No host has room */
        503: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
      };
    };
    put?: never;
    /** Create a sandbox (E2B); its envd always asks for the returned envdAccessToken */
    post: {
      parameters: {
        query?: never;
        header?: never;
        path?: never;
        cookie?: never;
      };
      requestBody: {
        content: {
          "application/json": components["schemas"]["E2BNewSandboxV2"];
        };
      };
      responses: {
        /** @description Created and running */
        201: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BSandbox"];
          };
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The sandbox is not in a state that allows this */
        409: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The host agent could not be reached or failed */
        502: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description No host has room */
        503: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
      };
    };
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  "/sandboxes": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    /** List the team's running sandboxes (E2B, older SDKs) */
    get: {
      parameters: {
        query?: {
          /** @description `key=value&k2=v2`, each key and value URL-encoded */
          metadata?: string;
        };
        header?: never;
        path?: never;
        cookie?: never;
      };
      requestBody?: never;
      responses: {
        /** @description Running sandboxes */
        200: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BListedSandbox"][];
          };
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The sandbox is not in a state that allows this */
        409: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The host agent could not be reached or failed */
        502: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description No host has room */
        503: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
      };
    };
    put?: never;
    /** Create a sandbox (E2B, older SDKs) */
    post: {
      parameters: {
        query?: never;
        header?: never;
        path?: never;
        cookie?: never;
      };
      requestBody: {
        content: {
          "application/json": components["schemas"]["E2BNewSandbox"];
        };
      };
      responses: {
        /** @description Created and running */
        201: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BSandbox"];
          };
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The sandbox is not in a state that allows this */
        409: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The host agent could not be reached or failed */
        502: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description No host has room */
        503: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
      };
    };
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  "/sandboxes/metrics": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    /**
     * The latest sample of each of the named running sandboxes
     * @description Sandboxes that are not the team's, not running or without samples are left out.
     */
    get: {
      parameters: {
        query: {
          /** @description Comma-separated sandbox ids */
          sandbox_ids: string;
        };
        header?: never;
        path?: never;
        cookie?: never;
      };
      requestBody?: never;
      responses: {
        /** @description Latest samples by sandbox id */
        200: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BSandboxesWithMetrics"];
          };
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The sandbox is not in a state that allows this */
        409: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The host agent could not be reached or failed */
        502: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description No host has room */
        503: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
      };
    };
    put?: never;
    post?: never;
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  "/sandboxes/{id}": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    /** A sandbox's details, including its envd access token */
    get: {
      parameters: {
        query?: never;
        header?: never;
        path: {
          id: string;
        };
        cookie?: never;
      };
      requestBody?: never;
      responses: {
        /** @description The sandbox */
        200: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BSandboxDetail"];
          };
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The sandbox is not in a state that allows this */
        409: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The host agent could not be reached or failed */
        502: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description No host has room */
        503: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
      };
    };
    put?: never;
    post?: never;
    /** Kill a sandbox */
    delete: {
      parameters: {
        query?: never;
        header?: never;
        path: {
          id: string;
        };
        cookie?: never;
      };
      requestBody?: never;
      responses: {
        /** @description Done */
        204: {
          headers: {
            [name: string]: unknown;
          };
          content?: never;
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The sandbox is not in a state that allows this */
        409: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The host agent could not be reached or failed */
        502: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description No host has room */
        503: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
      };
    };
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  "/sandboxes/{id}/pause": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    get?: never;
    put?: never;
    /** Pause a running sandbox, memory and disk (409 when it is already paused) */
    post: {
      parameters: {
        query?: never;
        header?: never;
        path: {
          id: string;
        };
        cookie?: never;
      };
      requestBody?: {
        content: {
          "application/json": components["schemas"]["E2BSandboxPauseRequest"];
        };
      };
      responses: {
        /** @description Done */
        204: {
          headers: {
            [name: string]: unknown;
          };
          content?: never;
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The sandbox is not in a state that allows this */
        409: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The host agent could not be reached or failed */
        502: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description No host has room */
        503: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
      };
    };
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  "/sandboxes/{id}/connect": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    get?: never;
    put?: never;
    /** Connect to a sandbox: resume it when paused; a timeout only ever extends its end */
    post: {
      parameters: {
        query?: never;
        header?: never;
        path: {
          id: string;
        };
        cookie?: never;
      };
      requestBody: {
        content: {
          "application/json": components["schemas"]["E2BConnectSandbox"];
        };
      };
      responses: {
        /** @description It was running */
        200: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BSandbox"];
          };
        };
        /** @description It was paused and is resumed */
        201: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BSandbox"];
          };
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The sandbox is not in a state that allows this */
        409: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The host agent could not be reached or failed */
        502: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description No host has room */
        503: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
      };
    };
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  "/v2/sandboxes/{id}/connect": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    get?: never;
    put?: never;
    /** Connect to a sandbox: resume it when paused; a timeout only ever extends its end */
    post: {
      parameters: {
        query?: never;
        header?: never;
        path: {
          id: string;
        };
        cookie?: never;
      };
      requestBody?: {
        content: {
          "application/json": components["schemas"]["E2BConnectSandboxV2"];
        };
      };
      responses: {
        /** @description It was running */
        200: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BSandbox"];
          };
        };
        /** @description It was paused and is resumed */
        201: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BSandbox"];
          };
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The sandbox is not in a state that allows this */
        409: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The host agent could not be reached or failed */
        502: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description No host has room */
        503: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
      };
    };
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  "/sandboxes/{id}/resume": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    get?: never;
    put?: never;
    /** Resume a paused sandbox (E2B, older SDKs; 409 when it runs) */
    post: {
      parameters: {
        query?: never;
        header?: never;
        path: {
          id: string;
        };
        cookie?: never;
      };
      requestBody?: {
        content: {
          "application/json": components["schemas"]["E2BResumedSandbox"];
        };
      };
      responses: {
        /** @description Resumed */
        201: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BSandbox"];
          };
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The sandbox is not in a state that allows this */
        409: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The host agent could not be reached or failed */
        502: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description No host has room */
        503: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
      };
    };
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  "/sandboxes/{id}/timeout": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    get?: never;
    put?: never;
    /** End the sandbox `timeout` seconds from now (shorter or longer than before) */
    post: {
      parameters: {
        query?: never;
        header?: never;
        path: {
          id: string;
        };
        cookie?: never;
      };
      requestBody: {
        content: {
          "application/json": components["schemas"]["E2BSandboxTimeoutRequest"];
        };
      };
      responses: {
        /** @description Done */
        204: {
          headers: {
            [name: string]: unknown;
          };
          content?: never;
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The sandbox is not in a state that allows this */
        409: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The host agent could not be reached or failed */
        502: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description No host has room */
        503: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
      };
    };
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  "/sandboxes/{id}/refreshes": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    get?: never;
    put?: never;
    /** Keep the sandbox alive `duration` seconds from now (default: its timeout); never shortens */
    post: {
      parameters: {
        query?: never;
        header?: never;
        path: {
          id: string;
        };
        cookie?: never;
      };
      requestBody?: {
        content: {
          "application/json": components["schemas"]["E2BSandboxRefreshRequest"];
        };
      };
      responses: {
        /** @description Done */
        204: {
          headers: {
            [name: string]: unknown;
          };
          content?: never;
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The sandbox is not in a state that allows this */
        409: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The host agent could not be reached or failed */
        502: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description No host has room */
        503: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
      };
    };
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  "/sandboxes/{id}/metrics": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    /** The guest's CPU, memory and disk samples (none while paused) */
    get: {
      parameters: {
        query?: {
          /** @description Unix seconds */
          start?: number | null;
          /** @description Unix seconds */
          end?: number | null;
        };
        header?: never;
        path: {
          id: string;
        };
        cookie?: never;
      };
      requestBody?: never;
      responses: {
        /** @description Samples, oldest first */
        200: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BSandboxMetric"][];
          };
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The sandbox is not in a state that allows this */
        409: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The host agent could not be reached or failed */
        502: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description No host has room */
        503: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
      };
    };
    put?: never;
    post?: never;
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  "/sandboxes/{id}/network": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    get?: never;
    /** Replace the sandbox's egress rules (omitted fields clear them); applied at once when running */
    put: {
      parameters: {
        query?: never;
        header?: never;
        path: {
          id: string;
        };
        cookie?: never;
      };
      requestBody: {
        content: {
          "application/json": components["schemas"]["E2BSandboxNetworkUpdateConfig"];
        };
      };
      responses: {
        /** @description Done */
        204: {
          headers: {
            [name: string]: unknown;
          };
          content?: never;
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The sandbox is not in a state that allows this */
        409: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The host agent could not be reached or failed */
        502: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description No host has room */
        503: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
      };
    };
    post?: never;
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  "/sandboxes/{id}/snapshots": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    get?: never;
    put?: never;
    /**
     * Snapshot a sandbox into a template new sandboxes start from; a running one keeps running
     * @description A name already used by one of the team's snapshots replaces that snapshot.
     */
    post: {
      parameters: {
        query?: never;
        header?: never;
        path: {
          id: string;
        };
        cookie?: never;
      };
      requestBody?: {
        content: {
          "application/json": components["schemas"]["E2BSandboxSnapshotRequest"];
        };
      };
      responses: {
        /** @description The snapshot */
        201: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BSnapshotInfo"];
          };
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The sandbox is not in a state that allows this */
        409: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The host agent could not be reached or failed */
        502: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description No host has room */
        503: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
      };
    };
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  "/snapshots": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    /** The team's snapshots, by name */
    get: {
      parameters: {
        query?: {
          sandboxID?: string;
          name?: string;
          limit?: number;
          nextToken?: string;
        };
        header?: never;
        path?: never;
        cookie?: never;
      };
      requestBody?: never;
      responses: {
        /** @description Snapshots */
        200: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BSnapshotInfo"][];
          };
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The sandbox is not in a state that allows this */
        409: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The host agent could not be reached or failed */
        502: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description No host has room */
        503: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
      };
    };
    put?: never;
    post?: never;
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  "/sandboxes/{id}/fork": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    get?: never;
    put?: never;
    /**
     * Fork a running sandbox: snapshot it (it keeps running, same end) and start `count` sandboxes from it
     * @description One entry per fork: `sandbox`, or the `error` that kept it from starting. The snapshot is kept while forks exist and removed when none started.
     */
    post: {
      parameters: {
        query?: never;
        header?: never;
        path: {
          id: string;
        };
        cookie?: never;
      };
      requestBody?: {
        content: {
          "application/json": components["schemas"]["E2BSandboxForkRequest"];
        };
      };
      responses: {
        /** @description One result per fork */
        201: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BSandboxForkResult"][];
          };
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The sandbox is not in a state that allows this */
        409: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The host agent could not be reached or failed */
        502: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description No host has room */
        503: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
      };
    };
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  "/templates": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    /** Templates the team can start sandboxes from: the platform's base images and its snapshots */
    get: {
      parameters: {
        query?: never;
        header?: never;
        path?: never;
        cookie?: never;
      };
      requestBody?: never;
      responses: {
        /** @description Templates */
        200: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BTemplate"][];
          };
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The sandbox is not in a state that allows this */
        409: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The host agent could not be reached or failed */
        502: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description No host has room */
        503: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
      };
    };
    put?: never;
    post?: never;
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  "/templates/aliases/{alias}": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    /** Resolve a template name (`base` is the default base template) */
    get: {
      parameters: {
        query?: never;
        header?: never;
        path: {
          alias: string;
        };
        cookie?: never;
      };
      requestBody?: never;
      responses: {
        /** @description The template */
        200: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BTemplateAliasResponse"];
          };
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The sandbox is not in a state that allows this */
        409: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The host agent could not be reached or failed */
        502: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description No host has room */
        503: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
      };
    };
    put?: never;
    post?: never;
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  "/templates/{template_id}": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    get?: never;
    put?: never;
    post?: never;
    /** Delete one of the team's snapshots */
    delete: {
      parameters: {
        query?: never;
        header?: never;
        path: {
          template_id: string;
        };
        cookie?: never;
      };
      requestBody?: never;
      responses: {
        /** @description Done */
        204: {
          headers: {
            [name: string]: unknown;
          };
          content?: never;
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The sandbox is not in a state that allows this */
        409: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description The host agent could not be reached or failed */
        502: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
        /** @description No host has room */
        503: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["E2BError"];
          };
        };
      };
    };
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  "/v1/sandboxes/{id}/exec/stream": {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    /**
     * Run a command with streamed output over a WebSocket
     * @description Upgrade to a WebSocket, send one JSON message shaped like the exec body; receive JSON events `{"type":"start","pid"}`, `{"type":"stdout"|"stderr","data":"<base64>"}`, `{"type":"end","exit_code","error"}` or `{"type":"error","code","message"}`. Browsers pass the session as `?token=`. Closing the socket cancels the command.
     */
    get: {
      parameters: {
        query?: never;
        header?: never;
        path: {
          id: string;
        };
        cookie?: never;
      };
      requestBody?: never;
      responses: {
        /** @description Switching to the WebSocket protocol */
        101: {
          headers: {
            [name: string]: unknown;
          };
          content?: never;
        };
        /** @description Malformed or out-of-bounds input */
        400: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Missing or invalid credentials */
        401: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The caller may not do this */
        403: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No such resource in the caller's team */
        404: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The resource is not in a state that allows this */
        409: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description Too many requests from this address (`rate_limited`; Retry-After gives the seconds to wait), or past one of the team's limits (`quota_exceeded`; the message names the limit and the numbers) */
        429: {
          headers: {
            /** @description Seconds until a rate-limited request may be tried again */
            "Retry-After"?: number;
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description The host agent could not be reached or failed */
        502: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
        /** @description No host has room */
        503: {
          headers: {
            [name: string]: unknown;
          };
          content: {
            "application/json": components["schemas"]["Error"];
          };
        };
      };
    };
    put?: never;
    post?: never;
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
}
export type webhooks = Record<string, never>;
export interface components {
  schemas: {
    Session: {
      token: string;
      expires_at: string;
      user: components["schemas"]["User"];
      team: components["schemas"]["Team"];
    };
    User: {
      /** Format: uuid */
      id: string;
      email: string;
      name: string;
      is_admin: boolean;
      created_at: string;
    };
    Team: {
      /** Format: uuid */
      id: string;
      name: string;
      /** @enum {string} */
      role: "owner" | "admin" | "member";
      created_at: string;
    };
    Error: {
      error: {
        /** @example not_found */
        code: string;
        /** @example sandbox 'abc' not found */
        message: string;
      };
    };
    SignupRequest: {
      /** Format: email */
      email: string;
      password: string;
      name?: string;
      /** @description An invite token (POST /v1/invites): needed once sign-up is closed */
      invite?: string;
    };
    LoginRequest: {
      /** Format: email */
      email: string;
      password: string;
    };
    Me: {
      /** @description null: the caller is an API key */
      user: components["schemas"]["User"] | null;
      /** Format: uuid */
      team_id: string;
      /** @enum {string} */
      role: "owner" | "admin" | "member";
      is_admin: boolean;
      teams: components["schemas"]["Team"][];
    };
    CreateTeam: {
      name: string;
    };
    Member: {
      /** Format: uuid */
      user_id: string;
      email: string;
      /** @enum {string} */
      role: "owner" | "admin" | "member";
      created_at: string;
    };
    AddMember: {
      /** Format: email */
      email: string;
      /**
       * @default member
       * @enum {string}
       */
      role: "owner" | "admin" | "member";
    };
    UpdateMember: {
      /** @enum {string} */
      role: "owner" | "admin" | "member";
    };
    CreatedApiKey: components["schemas"]["ApiKey"] & {
      /**
       * @description The key itself; shown only in this response
       * @example wrn_3f9a01bc5d7e4a2b8c6d0e1f2a3b4c5d
       */
      key: string;
    };
    ApiKey: {
      /** Format: uuid */
      id: string;
      name: string;
      /** @example wrn_3f9a01bc */
      prefix: string;
      created_at: string;
      last_used_at: string | null;
      revoked_at: string | null;
    };
    CreateApiKey: {
      name: string;
    };
    CreatedInvite: components["schemas"]["Invite"] & {
      /** @description Shown only here; pass it as `invite` to sign-up */
      token: string;
    };
    Invite: {
      /** Format: uuid */
      id: string;
      /** Format: uuid */
      team_id: string;
      /** @enum {string} */
      role: "owner" | "admin" | "member";
      email: string | null;
      expires_at: string;
      created_at: string;
    };
    CreateInvite: {
      /**
       * @default member
       * @enum {string}
       */
      role: "owner" | "admin" | "member";
      /**
       * Format: email
       * @description Only this address may use it
       */
      email?: string;
      /** @default 604800 */
      ttl_sec: number;
    };
    TeamLimits: {
      /** Format: uuid */
      team_id: string;
      /** @description Running sandboxes (pending, running, unknown) */
      sandboxes: {
        limit: number;
        used: number;
        custom: boolean;
      };
      vcpus: {
        limit: number;
        used: number;
        custom: boolean;
      };
      memory_mb: {
        limit: number;
        used: number;
        custom: boolean;
      };
      /** @description Disks of all kept sandboxes, paused ones too */
      disk_mb: {
        limit: number;
        used: number;
        custom: boolean;
      };
    };
    /** @description Each limit given is set; null puts it back to the control plane's default */
    SetTeamLimits: {
      sandboxes?: number | null;
      vcpus?: number | null;
      memory_mb?: number | null;
      disk_mb?: number | null;
    };
    Sandbox: {
      sandbox_id: string;
      template: string;
      /**
       * @description `unknown`: it was running on a host that stopped answering; calls on it fail with 502 until the host is back and reports it
       * @enum {string}
       */
      status: "pending" | "running" | "paused" | "unknown" | "stopped" | "error";
      vcpus: number;
      memory_mb: number;
      disk_size_mb: number;
      timeout_sec: number;
      host_id: string | null;
      client_request_id: string | null;
      metadata: {
        [key: string]: string;
      };
      /** @description When its lifetime ends (sandboxes created through E2B's API); null: it is paused once idle for `timeout_sec` */
      end_at: string | null;
      error: string;
      created_at: string;
      updated_at: string;
    };
    CreateSandbox: {
      /**
       * @default minimal
       * @example my-template
       */
      template: string;
      /** @default 1 */
      vcpus: number;
      /** @default 512 */
      memory_mb: number;
      /** @default 300 */
      timeout_sec: number;
      /** @default 20480 */
      disk_size_mb: number;
      env_vars?: {
        [key: string]: string;
      };
      /** @description Your own labels (key → value), returned with the sandbox */
      metadata?: {
        [key: string]: string;
      };
      /** @description Creating twice with the same id creates one sandbox */
      client_request_id?: string;
    };
    ExecResult: {
      stdout: string;
      stderr: string;
      exit_code: number;
      duration_ms: number;
      /** @enum {string} */
      encoding: "utf-8" | "base64";
      /** @description The command wrote more than 16 MiB to stdout: `stdout` holds its first 16 MiB, the rest was dropped (stream the command to get all of it) */
      stdout_truncated: boolean;
      /** @description As `stdout_truncated`, for stderr */
      stderr_truncated: boolean;
    };
    Exec: {
      cmd: string;
      /** @default [] */
      args: string[];
      /** @default 60 */
      timeout_sec: number;
      envs?: {
        [key: string]: string;
      };
      cwd?: string;
      user?: string;
    };
    Resume: {
      timeout_sec?: number;
    };
    Template: {
      name: string;
      /** @enum {string} */
      type: "base" | "snapshot";
      /** Format: uuid */
      team_id: string;
      host_id: string | null;
      vcpus: number;
      memory_mb: number;
      size_bytes: number;
      created_at: string;
    };
    CreateSnapshot: {
      /** @example k3j9x0q2m1n8b7v6 */
      sandbox_id: string;
      /** @example my-template */
      name?: string;
    };
    File: {
      path: string;
      size: number;
    };
    HostToken: {
      token: string;
      expires_at: string;
    };
    CreateHostToken: {
      /** @default 3600 */
      ttl_sec: number;
    };
    RegisteredHost: {
      /** Format: uuid */
      host_id: string;
      /** @description The host secret: the control plane sends it to the agent as `Authorization: Bearer`, the agent sends it on heartbeats */
      secret: string;
    };
    RegisterHost: {
      token: string;
      /** @example 10.0.0.5:50051 */
      address: string;
      /** @description The secret the agent was started with (`wrenn host-agent --secret`, `WRENN_HOST_SECRET`); the control plane sends it on every call to the agent. Without it one is made and returned: start the agent with that */
      secret?: string;
    };
    Heartbeat: {
      total_vcpus: number;
      total_memory_mb: number;
      free_disk_mb: number;
      vmm?: string;
      storage?: string;
      version?: string;
    };
    Host: {
      /** Format: uuid */
      id: string;
      address: string;
      /** @enum {string} */
      status: "ready" | "unreachable";
      vmm: string;
      storage: string;
      version: string;
      total_vcpus: number;
      total_memory_mb: number;
      free_disk_mb: number;
      /** @description What the host measured itself using at its last heartbeat (admission counts it); null: its agent does not measure */
      usage: {
        /** @description Host CPU busy, in cores */
        cpu_busy_cores: number;
        /** @description Memory in use, the VMMs' resident guest memory included */
        memory_used_mb: number;
        /** @description The VMMs' resident memory (PSS) */
        vmm_memory_mb: number;
        measured_at: string;
      } | null;
      /** @description Warm pool entries ready on the host: idle VMs a create of their template claims, counted in usage */
      warm_sandboxes: number;
      last_seen_at: string | null;
      created_at: string;
    };
    DirEntry: {
      name: string;
      path: string;
      /** @enum {string} */
      type: "file" | "dir" | "symlink" | "other";
      size: number;
      modified_at: string;
    };
    GuestPath: {
      path: string;
      user?: string;
    };
    MetricSample: {
      timestamp_ms: number;
      cpu_count: number;
      cpu_used_pct: number;
      mem_used_bytes: number;
      mem_total_bytes: number;
      disk_used_bytes: number;
      disk_total_bytes: number;
    };
    SandboxLogs: {
      /** @description The console's bytes as UTF-8 */
      text: string;
      /** @description Where `text` starts: the offset asked for, or the oldest byte still kept */
      offset: number;
      /** @description Ask again from here to read what follows (to follow the log) */
      next_offset: number;
    };
    E2BSandbox: {
      sandboxID: string;
      templateID: string;
      alias?: string;
      clientID: string;
      envdVersion: string;
      envdAccessToken: string;
      trafficAccessToken: string | null;
      domain: string | null;
    };
    E2BError: {
      /** @example 404 */
      code: number;
      /** @example sandbox 'abc' not found */
      message: string;
    };
    E2BNewSandboxV2: {
      /** @description A template or snapshot name; `base` is the default base template */
      templateID: string;
      /** @description Seconds until the sandbox is killed (or paused when `autoPause`) */
      timeout?: number;
      autoPause?: boolean;
      /**
       * @description Pauses always keep memory
       * @enum {boolean}
       */
      autoPauseMemory?: true;
      autoResume?: {
        enabled: boolean;
      };
      metadata?: {
        [key: string]: string;
      };
      envVars?: {
        [key: string]: string;
      };
      allow_internet_access?: boolean;
      network?: components["schemas"]["E2BSandboxNetworkConfig"];
      volumeMounts?: unknown[];
      mcp?: null;
      iam?: null;
    };
    E2BSandboxNetworkConfig: {
      allowOut?: string[];
      denyOut?: string[];
      egressProxy?: null;
      rules?: {
        [key: string]: unknown[];
      };
      /** @description When false, a sandbox's ports other than envd's need `trafficAccessToken` */
      allowPublicTraffic?: boolean;
      maskRequestHost?: string;
      httpsPorts?: number[];
    };
    E2BNewSandbox: {
      /** @description A template or snapshot name; `base` is the default base template */
      templateID: string;
      /** @description Seconds until the sandbox is killed (or paused when `autoPause`) */
      timeout?: number;
      autoPause?: boolean;
      /**
       * @description Pauses always keep memory
       * @enum {boolean}
       */
      autoPauseMemory?: true;
      autoResume?: {
        enabled: boolean;
      };
      metadata?: {
        [key: string]: string;
      };
      envVars?: {
        [key: string]: string;
      };
      allow_internet_access?: boolean;
      network?: components["schemas"]["E2BSandboxNetworkConfig"];
      volumeMounts?: unknown[];
      mcp?: null;
      iam?: null;
      secure?: boolean;
    };
    E2BListedSandbox: {
      sandboxID: string;
      templateID: string;
      alias?: string;
      clientID: string;
      startedAt: string;
      endAt: string;
      cpuCount: number;
      memoryMB: number;
      diskSizeMB: number;
      metadata: {
        [key: string]: string;
      };
      /** @enum {string} */
      state: "running" | "paused";
      envdVersion: string;
    };
    E2BSandboxesWithMetrics: {
      sandboxes: {
        [key: string]: components["schemas"]["E2BSandboxMetric"];
      };
    };
    E2BSandboxMetric: {
      timestamp: string;
      timestampUnix: number;
      cpuCount: number;
      cpuUsedPct: number;
      memUsed: number;
      memTotal: number;
      memCache: number;
      diskUsed: number;
      diskTotal: number;
    };
    E2BSandboxDetail: components["schemas"]["E2BListedSandbox"] & {
      envdAccessToken: string;
      domain: string | null;
      allowInternetAccess: boolean | null;
      network: {
        allowOut?: string[];
        denyOut?: string[];
        allowPublicTraffic: boolean;
      };
      lifecycle: {
        autoResume: boolean;
        /** @enum {string} */
        onTimeout: "kill" | "pause";
      };
    };
    E2BSandboxPauseRequest: {
      /**
       * @description Pauses always keep memory
       * @enum {boolean}
       */
      memory?: true;
    };
    E2BConnectSandbox: {
      timeout: number;
      /** @enum {boolean} */
      memory?: true;
    };
    E2BConnectSandboxV2: {
      /** @default 300 */
      timeout: number;
      /** @enum {boolean} */
      memory?: true;
    };
    E2BResumedSandbox: {
      /** @default 15 */
      timeout: number;
      autoPause?: boolean;
      /** @enum {boolean} */
      memory?: true;
    };
    E2BSandboxTimeoutRequest: {
      timeout: number;
    };
    E2BSandboxRefreshRequest: {
      duration?: number;
    };
    E2BSandboxNetworkUpdateConfig: {
      allowOut?: string[];
      denyOut?: string[];
      egressProxy?: null;
      rules?: {
        [key: string]: unknown[];
      };
      allow_internet_access?: boolean;
    };
    E2BSnapshotInfo: {
      snapshotID: string;
      names: string[];
    };
    E2BSandboxSnapshotRequest: {
      name?: string;
    };
    E2BSandboxForkResult: {
      sandbox?: components["schemas"]["E2BSandbox"];
      error?: components["schemas"]["E2BError"];
    };
    E2BSandboxForkRequest: {
      /** @default 1 */
      count: number;
      /** @default 15 */
      timeout: number;
    };
    E2BTemplate: {
      templateID: string;
      buildID: string;
      aliases: string[];
      names: string[];
      public: boolean;
      cpuCount: number;
      memoryMB: number;
      diskSizeMB: number;
      envdVersion: string;
      /** @enum {string} */
      buildStatus: "ready";
      buildCount: number;
      spawnCount: number;
      createdAt: string;
      updatedAt: string;
      lastSpawnedAt: string | null;
      createdBy: null;
    };
    E2BTemplateAliasResponse: {
      templateID: string;
      public: boolean;
    };
  };
  responses: never;
  parameters: never;
  requestBodies: never;
  headers: never;
  pathItems: never;
}
export type $defs = Record<string, never>;
export type operations = Record<string, never>;
