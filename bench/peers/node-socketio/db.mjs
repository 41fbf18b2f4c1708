// PostgreSQL access for the peer: database bootstrap, schema, and the queries behind each event.
// Plain node-postgres: one Pool, parameterised queries, a transaction where a request writes.
import pg from "pg";

// int8 (seq, last_seq) as JS numbers rather than strings; seqs stay far below 2^53.
pg.types.setTypeParser(20, (v) => parseInt(v, 10));

const SCHEMA = `
CREATE TABLE IF NOT EXISTS users (
  id   text PRIMARY KEY,
  name text
);

CREATE TABLE IF NOT EXISTS conversations (
  id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  kind       text NOT NULL CHECK (kind IN ('direct', 'group')),
  title      text,
  direct_key text UNIQUE,
  created_at timestamptz NOT NULL DEFAULT now(),
  last_seq   bigint NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS members (
  conversation_id uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
  user_id         text NOT NULL REFERENCES users (id),
  role            text NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
  joined_at       timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX IF NOT EXISTS members_user_id_idx ON members (user_id);

CREATE TABLE IF NOT EXISTS messages (
  id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  conversation_id uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
  seq             bigint NOT NULL,
  sender_id       text NOT NULL,
  client_id       text NOT NULL,
  body            text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  edited_at       timestamptz,
  deleted_at      timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS messages_conversation_seq_idx ON messages (conversation_id, seq);
CREATE UNIQUE INDEX IF NOT EXISTS messages_idempotency_idx ON messages (conversation_id, sender_id, client_id);
`;

const IDEMPOTENCY_INDEX = "messages_idempotency_idx";

/** Create the database named in `databaseUrl` if it does not exist yet. */
export async function ensureDatabase(databaseUrl) {
  const url = new URL(databaseUrl);
  const name = decodeURIComponent(url.pathname.replace(/^\//, ""));
  if (!name) return;
  url.pathname = "/postgres";
  const admin = new pg.Client({ connectionString: url.toString() });
  await admin.connect();
  try {
    const { rowCount } = await admin.query("SELECT 1 FROM pg_database WHERE datname = $1", [name]);
    if (rowCount === 0) {
      try {
        await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
      } catch (err) {
        // Another process created it in the meantime.
        if (err.code !== "42P04" && err.code !== "23505") throw err;
      }
    }
  } finally {
    await admin.end();
  }
}

export async function createPool(databaseUrl, max) {
  await ensureDatabase(databaseUrl);
  const pool = new pg.Pool({ connectionString: databaseUrl, max });
  pool.on("error", (err) => console.error("pg pool: idle client error:", err.message));
  const client = await pool.connect();
  try {
    // Several peer processes may start at once; CREATE ... IF NOT EXISTS is not race-free.
    await client.query("BEGIN");
    await client.query("SELECT pg_advisory_xact_lock(727274)");
    await client.query(SCHEMA);
    await client.query("COMMIT");
  } catch (err) {
    await client.query("ROLLBACK").catch(() => {});
    throw err;
  } finally {
    client.release();
  }
  return pool;
}

const iso = (d) => (d == null ? null : d.toISOString());

const MESSAGE_COLUMNS =
  "id, conversation_id, seq, sender_id, client_id, body, created_at, edited_at, deleted_at";

export function toMessage(r) {
  return {
    id: r.id,
    conversation_id: r.conversation_id,
    seq: r.seq,
    sender_id: r.sender_id,
    client_id: r.client_id,
    body: r.body,
    created_at: iso(r.created_at),
    edited_at: iso(r.edited_at),
    deleted_at: iso(r.deleted_at),
  };
}

// A conversation with its members (one json_agg) and its last message (a join on last_seq).
const CONVERSATION_SELECT = `
SELECT c.id, c.kind, c.title, c.created_at, c.last_seq,
       (SELECT json_agg(json_build_object('user_id', mm.user_id, 'name', u.name, 'role', mm.role)
                        ORDER BY CASE mm.role WHEN 'owner' THEN 0 WHEN 'admin' THEN 1 ELSE 2 END, mm.user_id)
          FROM members mm JOIN users u ON u.id = mm.user_id
         WHERE mm.conversation_id = c.id) AS members,
       lm.id AS lm_id, lm.seq AS lm_seq, lm.sender_id AS lm_sender_id, lm.client_id AS lm_client_id,
       lm.body AS lm_body, lm.created_at AS lm_created_at, lm.edited_at AS lm_edited_at,
       lm.deleted_at AS lm_deleted_at
  FROM conversations c
  LEFT JOIN messages lm ON lm.conversation_id = c.id AND lm.seq = c.last_seq`;

function toConversation(r) {
  return {
    id: r.id,
    kind: r.kind,
    title: r.title,
    members: r.members ?? [],
    created_at: iso(r.created_at),
    last_seq: r.last_seq,
    last_message:
      r.lm_id == null
        ? null
        : toMessage({
            id: r.lm_id,
            conversation_id: r.id,
            seq: r.lm_seq,
            sender_id: r.lm_sender_id,
            client_id: r.lm_client_id,
            body: r.lm_body,
            created_at: r.lm_created_at,
            edited_at: r.lm_edited_at,
            deleted_at: r.lm_deleted_at,
          }),
  };
}

async function loadConversation(q, conversationId) {
  const { rows } = await q.query(`${CONVERSATION_SELECT} WHERE c.id = $1`, [conversationId]);
  return rows.length ? toConversation(rows[0]) : null;
}

async function inTransaction(pool, fn) {
  const client = await pool.connect();
  try {
    await client.query("BEGIN");
    const result = await fn(client);
    await client.query("COMMIT");
    return result;
  } catch (err) {
    await client.query("ROLLBACK").catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}

/** Record the user (latest display name) and return the ids of their conversations. */
export async function connectUser(pool, userId, name) {
  await pool.query(
    `INSERT INTO users (id, name) VALUES ($1, $2)
     ON CONFLICT (id) DO UPDATE SET name = COALESCE(EXCLUDED.name, users.name)`,
    [userId, name],
  );
  const { rows } = await pool.query("SELECT conversation_id FROM members WHERE user_id = $1", [userId]);
  return rows.map((r) => r.conversation_id);
}

/** Create a group; `memberIds` excludes the creator. Returns the conversation. */
export function createGroup(pool, creatorId, title, memberIds) {
  return inTransaction(pool, async (client) => {
    if (memberIds.length) {
      await client.query(
        "INSERT INTO users (id) SELECT unnest($1::text[]) ON CONFLICT (id) DO NOTHING",
        [memberIds],
      );
    }
    const {
      rows: [conv],
    } = await client.query("INSERT INTO conversations (kind, title) VALUES ('group', $1) RETURNING id", [title]);
    await client.query(
      `INSERT INTO members (conversation_id, user_id, role)
       SELECT $1, u, CASE WHEN u = $2 THEN 'owner' ELSE 'member' END
         FROM unnest($3::text[]) AS u`,
      [conv.id, creatorId, [creatorId, ...memberIds]],
    );
    return loadConversation(client, conv.id);
  });
}

/** Get or create the direct conversation of a pair. Returns { conversation, created }. */
export function createDirect(pool, userId, otherId) {
  const directKey = JSON.stringify([userId, otherId].sort());
  return inTransaction(pool, async (client) => {
    await client.query("INSERT INTO users (id) VALUES ($1) ON CONFLICT (id) DO NOTHING", [otherId]);
    const inserted = await client.query(
      `INSERT INTO conversations (kind, direct_key) VALUES ('direct', $1)
       ON CONFLICT (direct_key) DO NOTHING RETURNING id`,
      [directKey],
    );
    let id;
    if (inserted.rowCount) {
      id = inserted.rows[0].id;
      await client.query(
        "INSERT INTO members (conversation_id, user_id, role) VALUES ($1, $2, 'member'), ($1, $3, 'member')",
        [id, userId, otherId],
      );
    } else {
      const existing = await client.query("SELECT id FROM conversations WHERE direct_key = $1", [directKey]);
      id = existing.rows[0].id;
    }
    return { conversation: await loadConversation(client, id), created: inserted.rowCount > 0 };
  });
}

export async function listConversations(pool, userId) {
  const { rows } = await pool.query(
    `${CONVERSATION_SELECT}
      WHERE c.id IN (SELECT conversation_id FROM members WHERE user_id = $1)
      ORDER BY COALESCE(lm.created_at, c.created_at) DESC, c.id DESC`,
    [userId],
  );
  return rows.map(toConversation);
}

/**
 * Store a message. Returns { message, created } or null when the conversation does not exist or the
 * sender is not a member. A retry with the same (conversation, sender, client_id) returns the stored
 * message with created = false.
 */
export async function sendMessage(pool, conversationId, senderId, clientId, body) {
  try {
    return await inTransaction(pool, async (client) => {
      const membership = await client.query(
        "SELECT 1 FROM members WHERE conversation_id = $1 AND user_id = $2",
        [conversationId, senderId],
      );
      if (membership.rowCount === 0) return null;
      const {
        rows: [{ last_seq: seq }],
      } = await client.query(
        "UPDATE conversations SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq",
        [conversationId],
      );
      const { rows } = await client.query(
        `INSERT INTO messages (conversation_id, seq, sender_id, client_id, body)
         VALUES ($1, $2, $3, $4, $5) RETURNING ${MESSAGE_COLUMNS}`,
        [conversationId, seq, senderId, clientId, body],
      );
      return { message: toMessage(rows[0]), created: true };
    });
  } catch (err) {
    if (err.code !== "23505" || err.constraint !== IDEMPOTENCY_INDEX) throw err;
    // Idempotent retry: the transaction (and its seq) was rolled back; return what is stored.
    const { rows } = await pool.query(
      `SELECT ${MESSAGE_COLUMNS} FROM messages
        WHERE conversation_id = $1 AND sender_id = $2 AND client_id = $3`,
      [conversationId, senderId, clientId],
    );
    return { message: toMessage(rows[0]), created: false };
  }
}

/**
 * A page of history, or null when the conversation is not visible to the user. One query: the member
 * row, laterally joined to the page (no member row: no rows; member but no messages: one null row).
 */
export async function history(pool, conversationId, userId, { beforeSeq, afterSeq, limit }) {
  const conds = ["conversation_id = mem.conversation_id"];
  const params = [conversationId, userId, limit + 1];
  if (beforeSeq != null) {
    params.push(beforeSeq);
    conds.push(`seq < $${params.length}`);
  }
  if (afterSeq != null) {
    params.push(afterSeq);
    conds.push(`seq > $${params.length}`);
  }
  // Newest first when only bounded above (or unbounded), oldest first when bounded below.
  const order = afterSeq != null ? "ASC" : "DESC";
  const { rows } = await pool.query(
    `SELECT m.* FROM members mem
       LEFT JOIN LATERAL (
         SELECT ${MESSAGE_COLUMNS} FROM messages
          WHERE ${conds.join(" AND ")}
          ORDER BY seq ${order} LIMIT $3
       ) m ON true
      WHERE mem.conversation_id = $1 AND mem.user_id = $2`,
    params,
  );
  if (rows.length === 0) return null;
  const found = rows.filter((r) => r.id != null);
  const hasMore = found.length > limit;
  const page = found.slice(0, limit);
  if (order === "DESC") page.reverse();
  return { messages: page.map(toMessage), has_more: hasMore };
}
