// Starting a conversation: a direct chat with one person, or a group.
//
// Before a chat with someone confab can't vouch for, the dialog asks. The protocol gives no way
// to know whether a user id belongs to anyone: confab keeps no user registry, and `presence:get`
// answers "offline, never seen" for everyone who shares no conversation with the caller, so that
// presence can't be probed. What the app can know: people in one of the user's conversations
// (their presence answer is real: never seen means never signed in), and everyone else (it can't
// tell). For both it explains, and asks; for a known person who has been online it doesn't.

import { type ConfabClient } from "@confab/client";
import { useConfab, useConversations } from "@confab/client/react";
import { useState } from "preact/hooks";

import { humanError } from "../errors.js";
import { listNames } from "../format.js";
import { Dialog } from "./Dialog.js";

type Kind = "direct" | "group";

export function NewChat({ onClose, onCreated }: { onClose: () => void; onCreated: (id: string) => void }) {
  const client = useConfab();
  const { items } = useConversations();
  const [kind, setKind] = useState<Kind>("direct");
  const [user, setUser] = useState("");
  const [title, setTitle] = useState("");
  const [members, setMembers] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [warning, setWarning] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const ids = () => (kind === "direct" ? [user.trim()] : splitIds(members));

  async function create() {
    setBusy(true);
    setError(null);
    const asked = ids();
    try {
      const conversation =
        kind === "direct" ? await client.createDirect(user.trim()) : await client.createGroup(title.trim(), asked);
      onCreated(conversation.id);
    } catch (err) {
      setWarning(null);
      setError(humanError(err, "create", { ids: asked }));
    } finally {
      setBusy(false);
    }
  }

  async function submit(e: Event) {
    e.preventDefault();
    if (warning !== null) return void create();
    setBusy(true);
    setError(null);
    const question = await firstContact(client, items.map((i) => i.members.map((m) => m.user_id)).flat(), ids());
    setBusy(false);
    if (question) setWarning(question);
    else await create();
  }

  return (
    <Dialog title="New chat" onClose={onClose}>
      <form onSubmit={submit}>
        <fieldset class="segmented" disabled={warning !== null}>
          <legend class="sr-only">Kind of chat</legend>
          {(["direct", "group"] as const).map((k) => (
            <label key={k}>
              <input type="radio" name="kind" value={k} checked={kind === k} onChange={() => setKind(k)} />
              <span>{k === "direct" ? "Direct" : "Group"}</span>
            </label>
          ))}
        </fieldset>
        {kind === "direct" ? (
          <label>
            User id
            <input
              name="user"
              value={user}
              autoFocus
              required
              readOnly={warning !== null}
              autoComplete="off"
              onInput={(e) => setUser(e.currentTarget.value)}
            />
          </label>
        ) : (
          <>
            <label>
              Title
              <input
                name="title"
                value={title}
                autoFocus
                required
                maxLength={200}
                readOnly={warning !== null}
                autoComplete="off"
                onInput={(e) => setTitle(e.currentTarget.value)}
              />
            </label>
            <label>
              Members (user ids, separated by commas or spaces)
              <input
                name="members"
                value={members}
                readOnly={warning !== null}
                autoComplete="off"
                onInput={(e) => setMembers(e.currentTarget.value)}
              />
            </label>
          </>
        )}
        {warning !== null && (
          <p class="notice" role="alert">
            {warning}
          </p>
        )}
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <div class="dialog-actions">
          {warning !== null ? (
            <>
              <button type="button" class="ghost" onClick={() => setWarning(null)}>
                Back
              </button>
              <button type="submit" class="primary" disabled={busy}>
                Start the chat
              </button>
            </>
          ) : (
            <>
              <button type="button" class="ghost" onClick={onClose}>
                Cancel
              </button>
              <button type="submit" class="primary" disabled={busy}>
                Create
              </button>
            </>
          )}
        </div>
      </form>
    </Dialog>
  );
}

export function splitIds(text: string): string[] {
  return text
    .split(/[\s,]+/)
    .map((m) => m.trim())
    .filter(Boolean);
}

/**
 * What to ask before starting a chat with `ids`, or null: people who share none of the user's
 * conversations (confab can't say whether they ever signed in), and people who do but have never
 * been online (they haven't signed in yet).
 */
async function firstContact(client: ConfabClient, known: string[], ids: string[]): Promise<string | null> {
  const me = client.me?.id;
  const others = [...new Set(ids)].filter((id) => id !== "" && id !== me);
  if (others.length === 0) return null;
  const shared = new Set(known);
  const strangers = others.filter((id) => !shared.has(id));
  let neverSeen: string[] = [];
  const acquaintances = others.filter((id) => shared.has(id));
  if (acquaintances.length > 0) {
    try {
      const presence = await client.fetchPresence(acquaintances);
      neverSeen = presence.filter((p) => !p.online && p.last_seen_at === null).map((p) => p.user_id);
    } catch {
      // No answer: don't hold the user up over a courtesy question.
    }
  }
  const quoted = (list: string[]) => listNames(list.map((id) => `“${id}”`));
  const parts: string[] = [];
  if (strangers.length > 0) {
    parts.push(
      `You don't share a conversation with ${quoted(strangers)} yet, so confab can't tell whether ${
        strangers.length === 1 ? "they have" : "these people have"
      } ever signed in. If not, they'll see this chat when they first sign in. User ids must match exactly: check the spelling.`,
    );
  }
  if (neverSeen.length > 0) {
    parts.push(
      `${quoted(neverSeen)} ${neverSeen.length === 1 ? "has" : "have"} never signed in. They'll see this chat when they first sign in.`,
    );
  }
  return parts.length > 0 ? parts.join(" ") : null;
}
