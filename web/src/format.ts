// Names and times as people read them.

import type { Conversation, Message } from "@confab/client";

export function memberName(conversation: Conversation | undefined, userId: string): string {
  return conversation?.members.find((m) => m.user_id === userId)?.name ?? userId;
}

/** A direct chat is named after the other person; a group has its title. */
export function conversationTitle(conversation: Conversation, me: string | undefined): string {
  if (conversation.kind === "group") return conversation.title ?? "Group";
  const other = conversation.members.find((m) => m.user_id !== me);
  return other ? (other.name ?? other.user_id) : "Just you";
}

export function otherMember(conversation: Conversation, me: string | undefined): string | undefined {
  if (conversation.kind !== "direct") return undefined;
  return conversation.members.find((m) => m.user_id !== me)?.user_id;
}

export function preview(message: Message | null, me: string | undefined, conversation: Conversation): string {
  if (!message) return "No messages yet";
  const who = message.sender_id === me ? "You: " : conversation.kind === "group" ? `${memberName(conversation, message.sender_id)}: ` : "";
  if (message.deleted_at !== null || message.body === null) return `${who}message deleted`;
  return who + message.body.replace(/\s+/g, " ");
}

export function clock(iso: string): string {
  return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

/** "14:05" today, "Mon" this week, "3 Mar" before. */
export function shortWhen(iso: string): string {
  const date = new Date(iso);
  const now = new Date();
  if (date.toDateString() === now.toDateString()) return clock(iso);
  if (now.getTime() - date.getTime() < 6 * 86_400_000) return date.toLocaleDateString([], { weekday: "short" });
  return date.toLocaleDateString([], { day: "numeric", month: "short" });
}

export function lastSeen(iso: string | null): string {
  if (!iso) return "offline";
  return `last seen ${shortWhen(iso)}`;
}

export function listNames(names: string[]): string {
  if (names.length <= 1) return names.join("");
  return `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]}`;
}
