// Refusals in people's words. The server's messages are written for developers ("user_id: a
// direct conversation needs another user", field first, as docs/PROTOCOL.md describes); the app
// says what happened and what to do, from the error's code and field.

import { ConfabError } from "@confab/client";

import { formatNumber } from "./format.js";

/** What was being attempted, where the same code means different things. */
export type Attempt = "create" | "members" | "send" | "edit" | "delete" | "leave" | "sign-in";

/** A sentence for an error from the client (or anything thrown). */
export function humanError(error: unknown, attempt?: Attempt, sent?: { ids?: string[] }): string {
  if (!(error instanceof ConfabError)) {
    if (error instanceof TypeError) return "The server can't be reached. Check your connection and try again.";
    return sentence(error instanceof Error ? error.message : String(error));
  }
  const detail = withoutField(error.message, error.field);
  switch (error.code) {
    case "invalid_payload":
    case "too_large":
      return badInput(error.field, detail, error.code, attempt, sent);
    case "forbidden":
      // The server's reasons are already plain ("only the owner or an admin can add members").
      return sentence(detail);
    case "not_found":
      if (error.message.includes("message")) return "That message no longer exists.";
      return "This conversation isn't available: you may have been removed from it.";
    case "conflict":
      return attempt === "edit" ? "This message was deleted, so it can't be edited." : sentence(detail);
    case "rate_limited": {
      const seconds = Math.max(1, Math.ceil((error.retryAfterMs ?? 1000) / 1000));
      return `That was a lot at once. Try again in ${formatNumber(seconds)} ${seconds === 1 ? "second" : "seconds"}.`;
    }
    case "unavailable":
      return "The chat server is having trouble right now. Try again in a moment.";
    case "timeout":
    case "disconnected":
      return "No answer from the chat server. Check your connection and try again.";
    case "unauthorized":
      return "Your session isn't valid any more. Sign in again.";
    case "closed":
      return "You have signed out.";
    case "internal":
      return "Something went wrong on the chat server. Try again later.";
    default:
      return sentence(detail);
  }
}

/** The server names the field first ("title: must not be empty"); people don't need it. */
function withoutField(message: string, field: string | undefined): string {
  if (field && message.startsWith(`${field}: `)) return message.slice(field.length + 2);
  return message.replace(/^[a-z_]+(\[\d+\])?: /, "");
}

/** "must not be empty" about a thing → "A user id can't be empty.", and so on. */
function badInput(
  field: string | undefined,
  detail: string,
  code: string,
  attempt: Attempt | undefined,
  sent: { ids?: string[] } | undefined,
): string {
  const list = field?.match(/^(user_ids|member_ids)(?:\[(\d+)\])?$/);
  if (field === "user_id" && detail.includes("needs another user")) {
    return "That's you: a direct chat needs someone else's user id.";
  }
  if (field === "user_id" || field === "sub") return `${problem("A user id", detail)}`;
  if (list) {
    const index = list[2] === undefined ? undefined : Number(list[2]);
    const id = index === undefined ? undefined : sent?.ids?.[index];
    if (code === "too_large" && index === undefined) return sentence(detail.replace(/^a group/, "A group"));
    if (detail.includes("at least one")) return "Name at least one person.";
    if (id !== undefined) return `“${id}” can't be a user id: ${reason(detail)}.`;
    return problem("A user id", detail);
  }
  if (field === "title") return problem("The title", detail);
  if (field === "body") return problem(attempt === "edit" ? "The message" : "A message", detail);
  if (field === "token") return "That token wasn't accepted. Get a new one from your app.";
  return sentence(detail);
}

/** Turns the server's "must be at most 128 characters" into "it is longer than 128 characters". */
function reason(detail: string): string {
  const max = detail.match(/at most (\d+) characters/);
  if (max) return `it is longer than ${formatNumber(Number(max[1]))} characters`;
  if (detail.includes("empty")) return "it is empty";
  if (detail.includes("control characters") || detail.includes("NUL")) return "it contains control characters";
  if (detail.includes("invisible")) return "it contains invisible or text-direction characters";
  if (detail.includes("start or end with a space")) return "it starts or ends with a space";
  return detail;
}

/** "A user id" + "must be at most 128 characters" → "A user id can be at most 128 characters." */
function problem(subject: string, detail: string): string {
  const max = detail.match(/at most (\d+) characters/);
  if (max) return `${subject} can be at most ${formatNumber(Number(max[1]))} characters.`;
  if (detail.includes("empty") || detail.includes("only whitespace") || detail.includes("required")) {
    return `${subject} can't be empty.`;
  }
  if (detail.includes("control characters") || detail.includes("NUL")) return `${subject} can't contain control characters.`;
  if (detail.includes("invisible")) return `${subject} can't contain invisible or text-direction characters.`;
  if (detail.includes("start or end with a space")) return `${subject} can't start or end with a space.`;
  return `${subject}: ${sentence(detail)}`;
}

/** Capitalised, with a full stop. */
function sentence(text: string): string {
  const t = text.trim();
  if (!t) return "Something went wrong.";
  const s = t.charAt(0).toUpperCase() + t.slice(1);
  return /[.!?]$/.test(s) ? s : `${s}.`;
}
