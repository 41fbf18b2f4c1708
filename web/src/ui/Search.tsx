// Search over the user's conversations: a box above the list, results with the matching passage
// (its matches marked, the text never rendered as HTML); a result opens its conversation.

import type { SearchResult } from "@confab/client";
import { useConfab, useConversations } from "@confab/client/react";
import { useState } from "preact/hooks";

import { humanError } from "../errors.js";
import { focusMessage } from "../focus.js";
import { clock, conversationTitle } from "../format.js";
import { hrefFor, navigate } from "../route.js";
import { useActivity } from "./ChatApp.js";

/** The snippet as text nodes, with the highlighted ranges in <mark>. */
function Highlighted({ result }: { result: SearchResult }) {
  const chars = Array.from(result.snippet);
  const parts = [];
  let at = 0;
  for (const [start, end] of result.highlights) {
    if (start < at) continue;
    parts.push(chars.slice(at, start).join(""));
    parts.push(<mark key={start}>{chars.slice(start, end).join("")}</mark>);
    at = end;
  }
  parts.push(chars.slice(at).join(""));
  return <>{parts}</>;
}

export function Search() {
  const client = useConfab();
  const activity = useActivity();
  const { items } = useConversations();
  const titleOf = (id: string) => {
    const conversation = items.find((i) => i.id === id);
    return conversation ? conversationTitle(conversation, client.me?.id, activity.name) : "A conversation";
  };
  const [query, setQuery] = useState("");
  const [results, setResults] = useState<SearchResult[] | null>(null);
  const [error, setError] = useState<string | null>(null);

  async function search(e: Event) {
    e.preventDefault();
    if (!query.trim()) {
      setResults(null);
      return;
    }
    try {
      setResults((await client.search(query, { limit: 20 })).results);
      setError(null);
    } catch (err) {
      setError(humanError(err));
    }
  }

  return (
    <div class="search">
      <form role="search" onSubmit={(e) => void search(e)}>
        <input
          type="search"
          placeholder="Search messages"
          aria-label="Search messages"
          value={query}
          onInput={(e) => {
            setQuery(e.currentTarget.value);
            if (!e.currentTarget.value) setResults(null);
          }}
        />
      </form>
      {error && (
        <p class="error small pad" role="alert">
          {error}
        </p>
      )}
      {results && (
        <ul class="search-results" aria-label="Search results">
          {results.length === 0 && <li class="muted pad">Nothing found.</li>}
          {results.map((r) => (
            <li key={r.message.id}>
              <a
                href={hrefFor(r.message.conversation_id)}
                onClick={(e) => {
                  e.preventDefault();
                  setResults(null);
                  focusMessage(r.message.conversation_id, r.message.seq);
                  navigate(r.message.conversation_id);
                }}
              >
                <span class="search-where">
                  {titleOf(r.message.conversation_id)} · <time dateTime={r.message.created_at}>{clock(r.message.created_at)}</time>
                </span>
                <span class="search-snippet">
                  <Highlighted result={r} />
                </span>
              </a>
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}
