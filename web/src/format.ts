// Names, words and times as people read them, through Intl. The app's words are English, so
// lists and plurals follow English rules (a German browser would otherwise get "Bob und Carol
// are typing"); dates and times follow the browser's locale (its order of day and month, its
// 12- or 24-hour clock).

import type { Conversation, Message } from "@confab/client";

/** The language of the app's words (the page's `lang`). */
const WORDS = "en";

const lists = new Intl.ListFormat(WORDS, { style: "long", type: "conjunction" });
const plurals = new Intl.PluralRules(WORDS);
const numbers = new Intl.NumberFormat(WORDS);
const relativeDays = new Intl.RelativeTimeFormat(WORDS, { numeric: "auto" });

const time = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const weekday = new Intl.DateTimeFormat(undefined, { weekday: "long" });
const weekdayShort = new Intl.DateTimeFormat(undefined, { weekday: "short" });
const dayMonth = new Intl.DateTimeFormat(undefined, { weekday: "long", day: "numeric", month: "long" });
const dayMonthYear = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "long", year: "numeric" });
const shortDate = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short" });
const shortDateYear = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short", year: "numeric" });

/** "Alice, Bob, and Carol". */
export function listNames(names: string[]): string {
  return lists.format(names);
}

/** `3 members`, `1 member`: the number and the noun in the form its count needs. */
export function count(n: number, forms: { one: string; other: string }): string {
  return `${numbers.format(n)} ${plural(n, forms)}`;
}

/** The form of a word for `n` (English has `one` and `other`). */
export function plural(n: number, forms: { one: string; other: string }): string {
  return plurals.select(n) === "one" ? forms.one : forms.other;
}

export function formatNumber(n: number): string {
  return numbers.format(n);
}

/** A conversation is named after the other person (direct) or its title (group). */
export function conversationTitle(conversation: Conversation, me: string | undefined, name: (id: string) => string): string {
  if (conversation.kind === "group") return conversation.title ?? "Group";
  const other = conversation.members.find((m) => m.user_id !== me);
  return other ? name(other.user_id) : "Just you";
}

export function otherMember(conversation: Conversation, me: string | undefined): string | undefined {
  if (conversation.kind !== "direct") return undefined;
  return conversation.members.find((m) => m.user_id !== me)?.user_id;
}

export function preview(message: Message | null, me: string | undefined, conversation: Conversation, name: (id: string) => string): string {
  if (!message) return "No messages yet";
  const who =
    message.sender_id === null ? "" : message.sender_id === me ? "You: " : conversation.kind === "group" ? `${name(message.sender_id)}: ` : "";
  if (message.deleted_at !== null || message.body === null) return `${who}message deleted`;
  const files = message.attachments ?? [];
  if (message.body === "" && files.length > 0) {
    return who + (files.length === 1 ? (files[0]?.name ?? "a file") : `${files.length} files`);
  }
  return who + message.body.replace(/\s+/g, " ");
}

/** "14:05" (or "2:05 PM"), in the browser's locale. */
export function clock(iso: string): string {
  return time.format(new Date(iso));
}

/** Whole days from `date`'s local day to `now`'s (0 today, 1 yesterday). */
function daysAgo(date: Date, now: Date): number {
  const start = (d: Date) => new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime();
  return Math.round((start(now) - start(date)) / 86_400_000);
}

/** The local day of an instant, `YYYY-MM-DD`: for grouping and for `<time datetime>`. */
export function dayKey(iso: string): string {
  const d = new Date(iso);
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

function capitalise(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** A day separator: "Today", "Yesterday", "Monday" this week, "Monday 3 March", "3 March 2025". */
export function dayLabel(iso: string, now = new Date()): string {
  const date = new Date(iso);
  const ago = daysAgo(date, now);
  if (ago === 0 || ago === 1) return capitalise(relativeDays.format(-ago, "day"));
  if (ago > 1 && ago < 7) return weekday.format(date);
  if (date.getFullYear() === now.getFullYear()) return dayMonth.format(date);
  return dayMonthYear.format(date);
}

/** In the conversation list: "14:05" today, "Yesterday", "Mon" this week, "3 Mar" before. */
export function shortWhen(iso: string, now = new Date()): string {
  const date = new Date(iso);
  const ago = daysAgo(date, now);
  if (ago <= 0) return clock(iso);
  if (ago === 1) return capitalise(relativeDays.format(-1, "day"));
  if (ago < 7) return weekdayShort.format(date);
  if (date.getFullYear() === now.getFullYear()) return shortDate.format(date);
  return shortDateYear.format(date);
}

/** "last seen today at 14:05", "last seen yesterday at 09:12", "last seen 3 Mar". */
export function lastSeen(iso: string | null, now = new Date()): string {
  if (!iso) return "offline";
  const ago = daysAgo(new Date(iso), now);
  if (ago === 0 || ago === 1) return `last seen ${relativeDays.format(-ago, "day")} at ${clock(iso)}`;
  return `last seen ${shortWhen(iso, now)}`;
}
