// Starting a conversation: a direct chat with one person, or a group.

import { ConfabError } from "@confab/client";
import { useConfab } from "@confab/client/react";
import { useState } from "preact/hooks";

export function NewChat({ onClose, onCreated }: { onClose: () => void; onCreated: (id: string) => void }) {
  const client = useConfab();
  const [kind, setKind] = useState<"direct" | "group">("direct");
  const [user, setUser] = useState("");
  const [title, setTitle] = useState("");
  const [members, setMembers] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function create(e: Event) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const conversation =
        kind === "direct"
          ? await client.createDirect(user.trim())
          : await client.createGroup(
              title.trim(),
              members
                .split(/[\s,]+/)
                .map((m) => m.trim())
                .filter(Boolean),
            );
      onCreated(conversation.id);
    } catch (err) {
      setError(err instanceof ConfabError ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <div class="dialog-backdrop" onClick={(e) => e.target === e.currentTarget && onClose()}>
      <form class="dialog" role="dialog" aria-label="New chat" onSubmit={create}>
        <h2>New chat</h2>
        <div class="tabs" role="tablist">
          <button type="button" role="tab" aria-selected={kind === "direct"} onClick={() => setKind("direct")}>
            Direct
          </button>
          <button type="button" role="tab" aria-selected={kind === "group"} onClick={() => setKind("group")}>
            Group
          </button>
        </div>
        {kind === "direct" ? (
          <label>
            User id
            <input name="user" value={user} autoFocus required autoComplete="off" onInput={(e) => setUser(e.currentTarget.value)} />
          </label>
        ) : (
          <>
            <label>
              Title
              <input name="title" value={title} autoFocus required maxLength={200} autoComplete="off" onInput={(e) => setTitle(e.currentTarget.value)} />
            </label>
            <label>
              Members (user ids, separated by commas or spaces)
              <input name="members" value={members} autoComplete="off" onInput={(e) => setMembers(e.currentTarget.value)} />
            </label>
          </>
        )}
        {error && <p class="error">{error}</p>}
        <div class="dialog-actions">
          <button type="button" class="ghost" onClick={onClose}>
            Cancel
          </button>
          <button type="submit" class="primary" disabled={busy}>
            Create
          </button>
        </div>
      </form>
    </div>
  );
}
