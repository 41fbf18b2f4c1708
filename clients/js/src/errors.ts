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
  /**
   * For a rejected `send()` or `retry()`: the message's `client_id`. Find it in `pending()`:
   * after `timeout` it is still queued and will be sent; after a refusal it is `failed`.
   */
  readonly clientId: string | undefined;

  /** An error from the server's error body (see the protocol's error table). */
  constructor(body: ErrorBody, clientId?: string) {
    super(body.message || body.code);
    this.name = "ConfabError";
    this.code = body.code;
    this.field = body.field;
    this.reason = body.reason;
    this.retryAfterMs = body.retry_after_ms;
    this.clientId = clientId;
  }

  /** The same error, about the send of the message with this `client_id`. */
  forSend(clientId: string): ConfabError {
    return new ConfabError(this.body(), clientId);
  }

  /** The error as the protocol's error body. */
  body(): ErrorBody {
    return {
      code: this.code,
      message: this.message,
      ...(this.field !== undefined && { field: this.field }),
      ...(this.reason !== undefined && { reason: this.reason }),
      ...(this.retryAfterMs !== undefined && { retry_after_ms: this.retryAfterMs }),
    };
  }

  /** An error the client makes itself: no answer in time, no connection, or closed. */
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
