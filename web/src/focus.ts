// A message to bring into view once its conversation shows it: a search result's. The
// conversation loads older pages until the message is there (or its history ends), scrolls to
// it and marks it for a moment.

import { useEffect, useState } from "preact/hooks";

let pending: { conversationId: string; seq: number } | null = null;
const listeners = new Set<() => void>();

/** Asks for `seq` of `conversationId` to be shown (the caller opens the conversation). */
export function focusMessage(conversationId: string, seq: number): void {
  pending = { conversationId, seq };
  for (const listener of listeners) listener();
}

/** The seq waiting to be shown in this conversation, if any. */
export function usePendingFocus(conversationId: string): number | null {
  const [, rerender] = useState(0);
  useEffect(() => {
    const listener = () => rerender((n) => n + 1);
    listeners.add(listener);
    return () => void listeners.delete(listener);
  }, []);
  return pending?.conversationId === conversationId ? pending.seq : null;
}

/** The message was shown, or can't be. */
export function focusDone(): void {
  pending = null;
}
