// A group's members: who is in it and with what role; owners and admins add and remove people,
// and anyone can leave. The server decides who may do what; the buttons only follow its rules
// (docs/PROTOCOL.md), so a refusal is shown, never expected.

import { ConfabError, type Conversation, type Member } from "@confab/client";
import { useConfab } from "@confab/client/react";
import { useState } from "preact/hooks";

import { memberName } from "../format.js";

/** Whether `me` (with role `mine`) may remove `member`: owners anyone but themselves, admins plain members. */
function canRemove(mine: Member["role"] | undefined, member: Member, me: string | undefined): boolean {
  if (member.user_id === me || member.role === "owner") return false;
  return mine === "owner" || (mine === "admin" && member.role === "member");
}

export function Members({ conversation, onClose }: { conversation: Conversation; onClose: () => void }) {
  const client = useConfab();
  const me = client.me?.id;
  const mine = conversation.members.find((m) => m.user_id === me)?.role;
  const manages = mine === "owner" || mine === "admin";
  const [adding, setAdding] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function run(action: () => Promise<unknown>): Promise<boolean> {
    setBusy(true);
    setError(null);
    try {
      await action();
      return true;
    } catch (err) {
      setError(err instanceof ConfabError ? err.message : String(err));
      return false;
    } finally {
      setBusy(false);
    }
  }

  async function add(e: Event) {
    e.preventDefault();
    const ids = adding
      .split(/[\s,]+/)
      .map((m) => m.trim())
      .filter(Boolean);
    if (ids.length > 0 && (await run(() => client.addMembers(conversation.id, ids)))) setAdding("");
  }

  async function leave() {
    if (!confirm("Leave this group? You will stop receiving its messages.")) return;
    // Leaving closes the conversation, and this dialog with it.
    if (await run(() => client.leave(conversation.id))) onClose();
  }

  return (
    <div class="dialog-backdrop" onClick={(e) => e.target === e.currentTarget && onClose()}>
      <div class="dialog" role="dialog" aria-label="Members">
        <h2>Members ({conversation.members.length})</h2>
        <ul class="members">
          {conversation.members.map((m) => (
            <li key={m.user_id} class="member" data-user={m.user_id}>
              <span class="member-name">{m.user_id === me ? "You" : memberName(conversation, m.user_id)}</span>
              {m.role !== "member" && <span class="muted role">{m.role}</span>}
              {canRemove(mine, m, me) && (
                <button
                  type="button"
                  class="ghost"
                  disabled={busy}
                  onClick={() => void run(() => client.removeMembers(conversation.id, [m.user_id]))}
                >
                  Remove
                </button>
              )}
            </li>
          ))}
        </ul>
        {manages && (
          <form class="add-members" onSubmit={add}>
            <label>
              Add people (user ids)
              <input name="add" value={adding} autoComplete="off" onInput={(e) => setAdding(e.currentTarget.value)} />
            </label>
            <button type="submit" class="primary" disabled={busy || adding.trim() === ""}>
              Add
            </button>
          </form>
        )}
        {error && <p class="error">{error}</p>}
        <div class="dialog-actions">
          <button type="button" class="ghost danger" disabled={busy} onClick={() => void leave()}>
            Leave group
          </button>
          <button type="button" class="ghost" onClick={onClose}>
            Close
          </button>
        </div>
      </div>
    </div>
  );
}
