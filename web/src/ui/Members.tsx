// A group's members: who is in it and with what role; owners and admins add and remove people,
// and anyone can leave. A conversation carries its first 100 members; the rest of a large group
// is loaded a page at a time, when asked for. The server decides who may do what; the buttons only follow its rules
// (docs/PROTOCOL.md), so a refusal is shown, never expected.

import type { Conversation, Member } from "@confab/client";
import { useConfab } from "@confab/client/react";
import { useEffect, useState } from "preact/hooks";

import { humanError, type Attempt } from "../errors.js";
import { count } from "../format.js";
import { useActivity } from "./ChatApp.js";
import { Dialog } from "./Dialog.js";
import { splitIds } from "./NewChat.js";

/** Whether `me` (with role `mine`) may remove `member`: owners anyone but themselves, admins plain members. */
/** A count for display, as the browser writes numbers. */
function numberOf(n: number): string {
  return new Intl.NumberFormat().format(Math.max(0, n));
}

function canRemove(mine: Member["role"] | undefined, member: Member, me: string | undefined): boolean {
  if (member.user_id === me || member.role === "owner") return false;
  return mine === "owner" || (mine === "admin" && member.role === "member");
}

export function Members({ conversation, onClose }: { conversation: Conversation; onClose: () => void }) {
  const client = useConfab();
  const activity = useActivity();
  const me = client.me?.id;
  // Members past the first page, loaded on demand, and where the next page starts (`null`: none).
  const [more, setMore] = useState<Member[]>([]);
  const [next, setNext] = useState<string | null>(null);
  const [loading, setLoading] = useState(false);
  const first = conversation.members;
  const large = conversation.member_count > first.length;
  const shown = more.length === 0 ? first : first.concat(more.filter((m) => !first.some((f) => f.user_id === m.user_id)));
  const mine = shown.find((m) => m.user_id === me)?.role;
  const manages = mine === "owner" || mine === "admin";
  const [adding, setAdding] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  // A large group: learn where its second page starts (the first is in the conversation).
  useEffect(() => {
    if (!large) {
      setMore([]);
      setNext(null);
      return;
    }
    let live = true;
    client
      .listMembers(conversation.id, { limit: first.length })
      .then((page) => live && setNext(page.next))
      .catch(() => undefined);
    return () => {
      live = false;
    };
  }, [conversation.id, large]);

  async function loadMore() {
    if (next === null) return;
    setLoading(true);
    try {
      const page = await client.listMembers(conversation.id, { after: next });
      setMore((m) => m.concat(page.members));
      setNext(page.next);
    } catch (err) {
      setError(humanError(err, "members", { ids: [] }));
    } finally {
      setLoading(false);
    }
  }

  async function run(attempt: Attempt, ids: string[], action: () => Promise<unknown>): Promise<boolean> {
    setBusy(true);
    setError(null);
    try {
      await action();
      return true;
    } catch (err) {
      setError(humanError(err, attempt, { ids }));
      return false;
    } finally {
      setBusy(false);
    }
  }

  async function add(e: Event) {
    e.preventDefault();
    const ids = splitIds(adding);
    if (ids.length === 0) return;
    activity.expectMine(conversation.id, ids);
    if (await run("members", ids, () => client.addMembers(conversation.id, ids))) setAdding("");
  }

  function remove(userId: string) {
    activity.expectMine(conversation.id, [userId]);
    void run("members", [userId], () => client.removeMembers(conversation.id, [userId]));
  }

  async function leave() {
    if (!confirm("Leave this group? You will stop receiving its messages.")) return;
    // Leaving closes the conversation, and this dialog with it.
    if (await run("leave", [], () => client.leave(conversation.id))) onClose();
  }

  return (
    <Dialog label="Members" title={count(conversation.member_count, { one: "member", other: "members" })} onClose={onClose}>
      <ul class="members">
        {shown.map((m) => {
          const name = m.user_id === me ? "You" : activity.name(m.user_id);
          return (
            <li key={m.user_id} class="member" data-user={m.user_id}>
              <span class="member-name">
                {name}
                {/* The id says who someone is; names can be alike. */}
                {name !== m.user_id && <span class="muted member-id"> {m.user_id}</span>}
              </span>
              {m.role !== "member" && <span class="muted role">{m.role}</span>}
              {canRemove(mine, m, me) && (
                <button type="button" class="ghost" disabled={busy} aria-label={`Remove ${name}`} onClick={() => remove(m.user_id)}>
                  Remove
                </button>
              )}
            </li>
          );
        })}
      </ul>
      {next !== null && (
        <button type="button" class="ghost more-members" disabled={loading} onClick={() => void loadMore()}>
          {loading ? "Loading…" : `Show more (${numberOf(conversation.member_count - shown.length)} more)`}
        </button>
      )}
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
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <div class="dialog-actions">
        <button type="button" class="ghost danger" disabled={busy} onClick={() => void leave()}>
          Leave group
        </button>
        <button type="button" class="ghost" onClick={onClose}>
          Close
        </button>
      </div>
    </Dialog>
  );
}
