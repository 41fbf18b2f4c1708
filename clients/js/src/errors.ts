import type { ErrorBody, ErrorCode } from "./types.js";

/** A refused request, or one that could not get an answer. */
export class ConfabError extends Error {
  readonly code: ErrorCode;
  /** The offending field, for `invalid_payload` and `too_large`. */
  readonly field: string | undefined;
  /**
   * Why a token was refused, for `unauthorized`: `missing`, `invalid` or `expired` (the
   * server's), or `user_changed` (the client's: `getToken` gave a token for another user).
   */
  readonly reason: string | undefined;
  /** For `rate_limited`: how long to wait before trying again. */
  readonly retryAfterMs: number | undefined;

  constructor(body: ErrorBody) {
    super(body.message || body.code);
    this.name = "ConfabError";
    this.code = body.code;
    this.field = body.field;
    this.reason = body.reason;
    this.retryAfterMs = body.retry_after_ms;
  }

  static client(code: "timeout" | "disconnected" | "closed", message: string): ConfabError {
    return new ConfabError({ code, message });
  }

  /**
   * Whether trying again with the same payload (and, for sends, the same `client_id`) may
   * succeed. The server promises that a retried send is stored at most once, so these are safe.
   */
  get retryable(): boolean {
    return RETRYABLE.has(this.code);
  }
}

/**
 * No answer (timeout, disconnect), a database outage, or a rate limit (after waiting). Everything
 * else is an answer about the request itself, which sending it again would not change.
 */
const RETRYABLE: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  "timeout",
  "disconnected",
  "unavailable",
  "rate_limited",
]);
