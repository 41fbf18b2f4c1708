// The conversation list: most recent first, with the last message, unread badge and presence.

import { useConfab, useConversations, usePresence } from "@confab/client/react";

import { conversationTitle, otherMember, preview, shortWhen } from "../format.js";
import { initial } from "./ChatApp.js";

export function ConversationList({ selected, onSelect }: { selected: string | null; onSelect: (id: string) => void }) {
  const client = useConfab();
  const me = client.me?.id;
  const { loaded, items } = useConversations();
  const others = items.map((i) => otherMember(i, me)).filter((id): id is string => id !== undefined);
  const presence = usePresence(others);
  if (!loaded) return <p class="muted pad">Loading…</p>;
  if (items.length === 0) return <p class="muted pad">No conversations yet.</p>;
  return (
    <ul class="conversations" aria-label="Conversations">
      {items.map((conversation) => {
        const { last_message: lastMessage, unread_count: unread } = conversation;
        const title = conversationTitle(conversation, me);
        const other = otherMember(conversation, me);
        const online = other !== undefined && presence.get(other)?.online === true;
        const showUnread = unread > 0 && conversation.id !== selected;
        return (
          <li key={conversation.id}>
            <button
              type="button"
              class={`conversation${conversation.id === selected ? " selected" : ""}${showUnread ? " has-unread" : ""}`}
              data-conversation={conversation.id}
              onClick={() => onSelect(conversation.id)}
            >
              <span class={`avatar${conversation.kind === "group" ? " group" : ""}`}>
                {initial(title)}
                {other !== undefined && <span class={`dot${online ? " online" : ""}`} title={online ? "online" : "offline"} />}
              </span>
              <span class="conversation-text">
                <span class="conversation-top">
                  <span class="conversation-title">{title}</span>
                  <span class="conversation-time">{shortWhen(lastMessage?.created_at ?? conversation.created_at)}</span>
                </span>
                <span class="conversation-bottom">
                  <span class="conversation-preview">{preview(lastMessage, me, conversation)}</span>
                  {showUnread && (
                    <span class="badge" aria-label={`${unread} unread`}>
                      {unread > 99 ? "99+" : unread}
                    </span>
                  )}
                </span>
              </span>
            </button>
          </li>
        );
      })}
    </ul>
  );
}
