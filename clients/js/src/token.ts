// Reading (not verifying) a JWT's claims: the client needs to know who it is (`sub`, `name`)
// and, when the server can't say why it refused a token, whether the token had expired.

/** The claims of a token the client reads: who it is for, their name, when it expires. */
export interface TokenClaims {
  /** The user id. */
  sub?: string;
  /** The user's display name. */
  name?: string;
  /** Expiry, in seconds since the epoch. */
  exp?: number;
}

/** The claims of a token, read without checking its signature (the server checks it). */
export function readClaims(token: string): TokenClaims {
  const payload = token.split(".")[1];
  if (!payload) return {};
  try {
    const base64 = payload.replace(/-/g, "+").replace(/_/g, "/");
    const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
    const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
    const claims: unknown = JSON.parse(new TextDecoder().decode(bytes));
    if (typeof claims !== "object" || claims === null) return {};
    const c = claims as Record<string, unknown>;
    return {
      sub: typeof c.sub === "string" ? c.sub : undefined,
      name: typeof c.name === "string" ? c.name : undefined,
      exp: typeof c.exp === "number" ? c.exp : undefined,
    };
  } catch {
    return {};
  }
}

/** Whether the token's `exp` has passed (by this clock), so a refusal most likely meant "expired". */
export function looksExpired(token: string | undefined, nowMs = Date.now()): boolean {
  if (!token) return false;
  const { exp } = readClaims(token);
  return exp !== undefined && exp * 1000 <= nowMs;
}
