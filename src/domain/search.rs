//! Full-text search: a user's query, parsed once (the same rules on both databases), and the
//! highlighted snippet of a message that matched it.
//!
//! The query language is the one people type into search boxes, as PostgreSQL's
//! `websearch_to_tsquery` reads it: words (all must appear), `"a phrase"`, `or` between
//! alternatives, and `-word` for a word that must not appear.

use serde::Serialize;

/// A search query: at most [`SearchQuery::MAX_CHARS`] characters, with at least one word that
/// must appear (a query of exclusions alone would match nearly everything).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    raw: String,
    /// Alternatives (`or`); each is a list of terms that must all hold.
    any_of: Vec<Vec<Term>>,
}

/// A word or phrase that must appear, or must not.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Term {
    /// Lower-case words, in order: one for a word, several for a phrase.
    words: Vec<String>,
    negated: bool,
}

/// The words of a text: runs of letters and digits, lower-cased (as both databases' tokenizers
/// split and fold them, near enough for highlighting).
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

impl SearchQuery {
    pub const MAX_CHARS: usize = 256;

    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let raw = raw.trim();
        if raw.chars().nth(Self::MAX_CHARS).is_some() {
            return Err("must be at most 256 characters");
        }
        let mut any_of = vec![Vec::new()];
        let mut rest = raw;
        while !rest.is_empty() {
            rest = rest.trim_start();
            if rest.is_empty() {
                break;
            }
            let negated = rest.starts_with('-');
            if negated {
                rest = &rest[1..];
            }
            let (text, quoted) = if let Some(after) = rest.strip_prefix('"') {
                let end = after.find('"').unwrap_or(after.len());
                let text = &after[..end];
                rest = after.get(end + 1..).unwrap_or("");
                (text, true)
            } else {
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                let text = &rest[..end];
                rest = &rest[end..];
                (text, false)
            };
            if !quoted && !negated && text.eq_ignore_ascii_case("or") {
                if any_of.last().is_some_and(|terms| !terms.is_empty()) {
                    any_of.push(Vec::new());
                }
                continue;
            }
            let words = words(text);
            if words.is_empty() {
                continue;
            }
            // Unquoted punctuation splits words, which must then all appear (`e-mail`), as
            // PostgreSQL reads it; a phrase keeps them in order.
            if quoted {
                any_of
                    .last_mut()
                    .expect("never empty")
                    .push(Term { words, negated });
            } else {
                for word in words {
                    any_of.last_mut().expect("never empty").push(Term {
                        words: vec![word],
                        negated,
                    });
                }
            }
        }
        any_of.retain(|terms| !terms.is_empty());
        if any_of.is_empty() {
            return Err("must contain a word to look for");
        }
        if any_of.iter().any(|terms| terms.iter().all(|t| t.negated)) {
            return Err("must contain a word to look for, not only words to leave out");
        }
        Ok(Self {
            raw: raw.to_owned(),
            any_of,
        })
    }

    /// The query as typed (trimmed), for `websearch_to_tsquery`.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The query in SQLite FTS5's syntax: every word quoted (so nothing in it is an operator),
    /// `AND`/`NOT` within an alternative, `OR` between them.
    pub fn fts5(&self) -> String {
        let quote = |t: &Term| format!("\"{}\"", t.words.join(" ").replace('"', "\"\""));
        self.any_of
            .iter()
            .map(|terms| {
                let positive: Vec<String> =
                    terms.iter().filter(|t| !t.negated).map(quote).collect();
                let mut group = format!("({})", positive.join(" AND "));
                for t in terms.iter().filter(|t| t.negated) {
                    group = format!("({group} NOT {})", quote(t));
                }
                group
            })
            .collect::<Vec<_>>()
            .join(" OR ")
    }

    /// The words a match is highlighted for.
    fn wanted(&self) -> Vec<&str> {
        self.any_of
            .iter()
            .flatten()
            .filter(|t| !t.negated)
            .flat_map(|t| t.words.iter().map(String::as_str))
            .collect()
    }
}

/// A passage of a matching message, with where the query's words are in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Snippet {
    /// Plain text (never markup): a client shows it as text, marking the ranges below.
    pub snippet: String,
    /// `[start, end)` of each match in `snippet`, in characters (Unicode code points).
    pub highlights: Vec<[usize; 2]>,
}

/// Words of context kept before the first match and after it.
const BEFORE: usize = 8;
const AFTER: usize = 24;

impl Snippet {
    /// The part of `body` around the first of the query's words, with every one of them in it
    /// marked. A body with no match (a phrase split differently) gives its beginning.
    pub fn of(body: &str, query: &SearchQuery) -> Self {
        let wanted = query.wanted();
        // Each word of the body, as (start, end) in characters, and whether it is wanted.
        let chars: Vec<char> = body.chars().collect();
        let mut spans = Vec::new();
        let mut start = None;
        for (i, c) in chars.iter().chain(std::iter::once(&' ')).enumerate() {
            match (c.is_alphanumeric(), start) {
                (true, None) => start = Some(i),
                (false, Some(s)) => {
                    let word: String = chars[s..i].iter().collect::<String>().to_lowercase();
                    spans.push((s, i, wanted.contains(&word.as_str())));
                    start = None;
                }
                _ => {}
            }
        }
        let first = spans.iter().position(|(_, _, hit)| *hit).unwrap_or(0);
        let from_word = first.saturating_sub(BEFORE);
        let to_word = (first + AFTER).min(spans.len().saturating_sub(1));
        let (from, to) = match (spans.get(from_word), spans.get(to_word)) {
            (Some(a), Some(b)) => (
                if from_word == 0 { 0 } else { a.0 },
                if to_word + 1 >= spans.len() {
                    chars.len()
                } else {
                    b.1
                },
            ),
            _ => (0, chars.len()),
        };
        let lead = if from > 0 { "…" } else { "" };
        let tail = if to < chars.len() { "…" } else { "" };
        let offset = lead.chars().count();
        let text: String = chars[from..to].iter().collect();
        let highlights = spans
            .iter()
            .filter(|(s, e, hit)| *hit && *s >= from && *e <= to)
            .map(|(s, e, _)| [s - from + offset, e - from + offset])
            .collect();
        Self {
            snippet: format!("{lead}{}{tail}", text.trim_end()),
            highlights,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_read_like_a_search_box() {
        let q = SearchQuery::parse(r#"  deploy "red button" -staging or rollback "#).unwrap();
        assert_eq!(q.as_str(), r#"deploy "red button" -staging or rollback"#);
        assert_eq!(
            q.fts5(),
            r#"(("deploy" AND "red button") NOT "staging") OR ("rollback")"#
        );
        // Operators and quotes in words are only words.
        let q = SearchQuery::parse(r#"NEAR(a* ^b) "x"#).unwrap();
        assert_eq!(q.fts5(), r#"("near" AND "a" AND "b" AND "x")"#);
        assert!(SearchQuery::parse("   ").is_err());
        assert!(SearchQuery::parse("-alone").is_err());
        assert!(SearchQuery::parse("a or -b").is_err());
        assert!(SearchQuery::parse("!!! ???").is_err());
        assert!(SearchQuery::parse(&"w".repeat(257)).is_err());
        assert!(SearchQuery::parse("Zoë 東京").is_ok());
    }

    #[test]
    fn snippets_mark_the_words_around_the_first_match() {
        let q = SearchQuery::parse("deploy").unwrap();
        let s = Snippet::of("Shall we Deploy now? deploy!", &q);
        assert_eq!(s.snippet, "Shall we Deploy now? deploy!");
        assert_eq!(s.highlights, vec![[9, 15], [21, 27]]);
        let long = format!("{} deploy {}", "word ".repeat(50), "more ".repeat(50));
        let s = Snippet::of(&long, &q);
        assert!(
            s.snippet.starts_with('…') && s.snippet.ends_with('…'),
            "{}",
            s.snippet
        );
        let [a, b] = s.highlights[0];
        let marked: String = s.snippet.chars().skip(a).take(b - a).collect();
        assert_eq!(marked, "deploy");
        assert!(s.snippet.chars().count() < 250);
        // Multi-byte text: offsets are in characters.
        let s = Snippet::of("ünïcödé deploy", &q);
        assert_eq!(s.highlights, vec![[8, 14]]);
    }
}
