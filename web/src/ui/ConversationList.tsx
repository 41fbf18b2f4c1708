// The conversation list: most recent first, with the last message (or who is typing), unread
// badge and presence. Each title is a link to the conversation's address (so it can be opened in
// a new tab too; a plain click opens it here) stretched over its row.

import { useConfab, useConversations, usePresence } from "@confab/client/react";
import { useId } from "preact/hooks";

import { conversationTitle, count, listNames, otherMember, preview, shortWhen } from "../format.js";
import { hrefFor, navigate } from "../route.js";
import { initial, useActivity } from "./ChatApp.js";

export function ConversationList({ selected }: { selected: string | null }) {
  const client = useConfab();
  const activity = useActivity();
  const me = client.me?.id;
  const { loaded, items } = useConversations();
  const others = items.map((i) => otherMember(i, me)).filter((id): id is string => id !== undefined);
  const presence = usePresence(others);
  const idBase = useId();
  if (!loaded) return <p class="muted pad">Loading…</p>;
  return (
    <nav class="conversations" aria-label="Conversations">
      {items.length === 0 ? (
        <p class="muted pad">No conversations yet.</p>
      ) : (
        <ul>
          {items.map((conversation, index) => {
            const { last_message: lastMessage, unread_count: unread } = conversation;
            const title = conversationTitle(conversation, me, activity.name);
            const other = otherMember(conversation, me);
            const online = other !== undefined && presence.get(other)?.online === true;
            const showUnread = unread > 0 && conversation.id !== selected;
            const typing = activity.typingIn(conversation.id);
            const detailId = `${idBase}-d${index}`;
            const presenceId = `${idBase}-p${index}`;
            const when = lastMessage?.created_at ?? conversation.created_at;
            return (
              <li
                key={conversation.id}
                class={`conversation${conversation.id === selected ? " selected" : ""}${showUnread ? " has-unread" : ""}`}
                data-conversation={conversation.id}
              >
                <span class={`avatar${conversation.kind === "group" ? " group" : ""}`}>
                  <span aria-hidden="true">{initial(title)}</span>
                  {other !== undefined && <PresenceDot online={online} id={presenceId} />}
                </span>
                <span class="conversation-text">
                  <span class="conversation-top">
                    {/* The link is the title (its name is what it shows); it covers the whole row. */}
                    <a
                      href={hrefFor(conversation.id)}
                      class="conversation-title"
                      aria-current={conversation.id === selected ? "page" : undefined}
                      aria-describedby={other !== undefined ? `${presenceId} ${detailId}` : detailId}
                      onClick={(e) => {
                        // A plain click opens it here; with a modifier the browser opens a new tab.
                        if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
                        e.preventDefault();
                        navigate(conversation.id);
                      }}
                    >
                      {title}
                    </a>
                    <time class="conversation-time" dateTime={when}>
                      {shortWhen(when)}
                    </time>
                  </span>
                  <span class="conversation-bottom" id={detailId}>
                    {typing.length > 0 ? (
                      <span class="conversation-preview typing-preview">
                        {conversation.kind === "group" ? `${listNames(typing.map(activity.name))} ` : ""}typing…
                      </span>
                    ) : (
                      <span class="conversation-preview">{preview(lastMessage, me, conversation, activity.name)}</span>
                    )}
                    {showUnread && (
                      <span class="badge">
                        <span aria-hidden="true">{unread > 99 ? "99+" : unread}</span>
                        <span class="sr-only">{count(unread, { one: "unread message", other: "unread messages" })}</span>
                      </span>
                    )}
                  </span>
                </span>
              </li>
            );
          })}
        </ul>
      )}
    </nav>
  );
}

/** Online or offline: a filled or hollow dot, and the word for screen readers and on hover. */
export function PresenceDot({ online, id }: { online: boolean; id?: string }) {
  const word = online ? "online" : "offline";
  return <span class={`dot${online ? " online" : ""}`} id={id} role="img" aria-label={word} title={word} />;
}
