// Payload checks with the protocol's limits and error codes.

export class RequestError extends Error {
  constructor(code, message, field) {
    super(message);
    this.code = code;
    this.field = field;
  }
}

const invalid = (field, what) => new RequestError("invalid_payload", `${field}: ${what}`, field);
const tooLarge = (field, what) => new RequestError("too_large", `${field}: ${what}`, field);

export const LIMITS = {
  body: 5000,
  title: 200,
  clientId: 64,
  userId: 128,
  members: 1000,
  historyDefault: 50,
  historyMax: 200,
};

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const CONTROL_RE = /\p{Cc}/u;

/** Length in Unicode code points (only counted when the UTF-16 length could exceed `max`). */
function exceeds(s, max) {
  if (s.length <= max) return false;
  let n = 0;
  for (const _ of s) if (++n > max) return true;
  return false;
}

export function payloadObject(payload) {
  if (payload === undefined) return {};
  if (payload === null || typeof payload !== "object" || Array.isArray(payload)) {
    throw new RequestError("invalid_payload", "payload: must be an object");
  }
  return payload;
}

export function conversationId(p) {
  const v = p.conversation_id;
  if (typeof v !== "string") throw invalid("conversation_id", "must be a string");
  if (!UUID_RE.test(v)) throw invalid("conversation_id", "must be a UUID");
  return v.toLowerCase();
}

export function isUserId(v) {
  return typeof v === "string" && v.length > 0 && !exceeds(v, LIMITS.userId) && !CONTROL_RE.test(v);
}

export function userId(v, field) {
  if (typeof v !== "string") throw invalid(field, "must be a string");
  if (!isUserId(v)) throw invalid(field, `must be 1-${LIMITS.userId} characters without control characters`);
  return v;
}

export function clientId(p) {
  const v = p.client_id;
  if (typeof v !== "string") throw invalid("client_id", "must be a string");
  if (v.length === 0 || exceeds(v, LIMITS.clientId)) {
    throw invalid("client_id", `must be 1-${LIMITS.clientId} characters`);
  }
  return v;
}

export function body(p) {
  const v = p.body;
  if (typeof v !== "string") throw invalid("body", "must be a string");
  if (exceeds(v, LIMITS.body)) throw tooLarge("body", `at most ${LIMITS.body} characters`);
  if (v.trim().length === 0) throw invalid("body", "must not be empty or only whitespace");
  return v;
}

export function title(p) {
  const v = p.title;
  if (typeof v !== "string") throw invalid("title", "must be a string");
  const t = v.trim();
  if (t.length === 0) throw invalid("title", "must not be empty");
  if (exceeds(t, LIMITS.title)) throw tooLarge("title", `at most ${LIMITS.title} characters`);
  return t;
}

/** member_ids without duplicates and without the creator. */
export function memberIds(p, creatorId) {
  const v = p.member_ids ?? [];
  if (!Array.isArray(v)) throw invalid("member_ids", "must be an array of user ids");
  if (v.length > 10 * LIMITS.members) throw tooLarge("member_ids", `at most ${LIMITS.members} members`);
  const ids = new Set();
  for (const id of v) {
    userId(id, "member_ids");
    if (id !== creatorId) ids.add(id);
  }
  if (ids.size + 1 > LIMITS.members) throw tooLarge("member_ids", `at most ${LIMITS.members} members`);
  return [...ids];
}

function optionalSeq(p, field) {
  const v = p[field];
  if (v === undefined || v === null) return null;
  if (!Number.isSafeInteger(v) || v < 0) throw invalid(field, "must be a non-negative integer");
  return v;
}

export function historyQuery(p) {
  const beforeSeq = optionalSeq(p, "before_seq");
  const afterSeq = optionalSeq(p, "after_seq");
  let limit = p.limit;
  if (limit === undefined || limit === null) limit = LIMITS.historyDefault;
  else if (!Number.isSafeInteger(limit) || limit < 1) throw invalid("limit", "must be a positive integer");
  return { beforeSeq, afterSeq, limit: Math.min(limit, LIMITS.historyMax) };
}
