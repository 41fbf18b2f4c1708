//! Full-text search over the caller's conversations.

use serde_json::{Value, json};

use crate::helpers::*;

/// The bodies of a search's results, in order.
fn bodies(data: &Value) -> Vec<String> {
    data["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results in {data}"))
        .iter()
        .map(|r| r["message"]["body"].as_str().unwrap().to_owned())
        .collect()
}

async fn search(client: &confab_sio_client::Client, query: Value) -> Value {
    client.ok("message:search", query).await
}

both_backends! {
    async fn members_find_their_conversations_messages_only(app: TestApp) {
        let alice = app.connect("alice").await;
        let bob = app.connect("bob").await;
        let carol = app.connect("carol").await;
        let mallory = app.connect("mallory").await;
        let g1 = group(&alice, "ops", &["bob"]).await;
        let g2 = group(&alice, "staging", &["carol"]).await;
        send(&alice, &g1, "1", "Shall we deploy the red button?").await;
        send(&bob, &g1, "2", "lunch first").await;
        send(&carol, &g2, "3", "deploy staging at noon").await;

        let data = search(&alice, json!({ "query": "deploy" })).await;
        assert_eq!(bodies(&data), ["deploy staging at noon", "Shall we deploy the red button?"], "newest first");
        assert_eq!(data["has_more"], false);
        let first = &data["results"][1];
        assert_eq!(first["message"]["conversation_id"], g1.as_str());
        assert_eq!(first["snippet"], "Shall we deploy the red button?");
        assert_eq!(first["highlights"], json!([[9, 15]]));

        assert_eq!(bodies(&search(&bob, json!({ "query": "deploy" })).await), ["Shall we deploy the red button?"]);
        assert_eq!(bodies(&search(&carol, json!({ "query": "DEPLOY" })).await), ["deploy staging at noon"]);
        assert!(bodies(&search(&mallory, json!({ "query": "deploy" })).await).is_empty());
        // Naming a conversation one isn't in finds nothing either.
        assert!(bodies(&search(&mallory, json!({ "query": "deploy", "conversation_id": g1 })).await).is_empty());
        assert_eq!(bodies(&search(&alice, json!({ "query": "deploy", "conversation_id": g2 })).await), ["deploy staging at noon"]);

        // What people type into a search box.
        assert_eq!(bodies(&search(&alice, json!({ "query": "\"red button\"" })).await).len(), 1);
        assert!(bodies(&search(&alice, json!({ "query": "\"button red\"" })).await).is_empty());
        assert_eq!(bodies(&search(&alice, json!({ "query": "deploy -staging" })).await), ["Shall we deploy the red button?"]);
        assert_eq!(bodies(&search(&alice, json!({ "query": "lunch or noon" })).await), ["deploy staging at noon", "lunch first"]);
        // The index's own record of a message's conversation (SQLite) is not text to find.
        let token = format!("c{}", g1.replace('-', ""));
        assert!(bodies(&search(&alice, json!({ "query": token })).await).is_empty());
        assert!(bodies(&search(&alice, json!({ "query": format!("conversation:{token}") })).await).is_empty());
        // Operators of the databases' own syntaxes are only words here.
        for query in ["NEAR(deploy", "deploy*", "\"deploy", "body:deploy", "deploy AND", "(deploy))", "deploy & ! |"] {
            search(&alice, json!({ "query": query })).await;
        }

        // Over HTTP.
        let (status, body) = app.http().get("/api/search?q=deploy&limit=1", Some(&app.token("bob"))).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(bodies(&body["data"]), ["Shall we deploy the red button?"]);
    }

    async fn edits_are_found_by_their_new_text_and_deleted_messages_never(app: TestApp) {
        let alice = app.connect("alice").await;
        let id = group(&alice, "t", &[]).await;
        let m = send(&alice, &id, "1", "the alpha plan").await;
        assert_eq!(bodies(&search(&alice, json!({ "query": "alpha" })).await).len(), 1);
        alice.ok("message:edit", json!({ "conversation_id": id, "message_id": m["id"], "body": "the beta plan" })).await;
        assert!(bodies(&search(&alice, json!({ "query": "alpha" })).await).is_empty());
        assert_eq!(bodies(&search(&alice, json!({ "query": "beta" })).await), ["the beta plan"]);
        alice.ok("message:delete", json!({ "conversation_id": id, "message_id": m["id"] })).await;
        assert!(bodies(&search(&alice, json!({ "query": "beta" })).await).is_empty());
        assert!(bodies(&search(&alice, json!({ "query": "plan" })).await).is_empty());
    }

    async fn a_removed_member_finds_nothing(app: TestApp) {
        let alice = app.connect("alice").await;
        let bob = app.connect("bob").await;
        let id = group(&alice, "t", &["bob"]).await;
        send(&alice, &id, "1", "secret roadmap before").await;
        assert_eq!(bodies(&search(&bob, json!({ "query": "roadmap" })).await).len(), 1);
        alice.ok("conversation:members:remove", json!({ "conversation_id": id, "user_ids": ["bob"] })).await;
        send(&alice, &id, "2", "secret roadmap after").await;
        assert!(bodies(&search(&bob, json!({ "query": "roadmap" })).await).is_empty());
        assert_eq!(bodies(&search(&alice, json!({ "query": "roadmap" })).await).len(), 2);
    }

    async fn results_come_in_pages_newest_first(app: TestApp) {
        let alice = app.connect("alice").await;
        let id = group(&alice, "t", &[]).await;
        for i in 1..=5 {
            send(&alice, &id, &i.to_string(), &format!("ping number {i}")).await;
        }
        send(&alice, &id, "x", "unrelated").await;
        let mut seen = Vec::new();
        let mut before: Option<Value> = None;
        loop {
            let mut query = json!({ "query": "ping", "limit": 2 });
            if let Some(b) = &before {
                query["before"] = b.clone();
            }
            let data = search(&alice, query).await;
            let page = bodies(&data);
            assert!(page.len() <= 2);
            seen.extend(page);
            if data["has_more"] == false {
                break;
            }
            before = Some(data["results"][1]["message"]["id"].clone());
        }
        assert_eq!(seen, (1..=5).rev().map(|i| format!("ping number {i}")).collect::<Vec<_>>());
    }

    async fn an_edit_keeps_its_place_and_a_deleted_cursor_still_pages(app: TestApp) {
        let alice = app.connect("alice").await;
        let id = group(&alice, "t", &[]).await;
        let mut ids = Vec::new();
        for i in 1..=5 {
            ids.push(send(&alice, &id, &i.to_string(), &format!("ping number {i}")).await["id"].clone());
        }
        // An edit is found where it was sent, not as the newest.
        alice.ok("message:edit", json!({ "conversation_id": id, "message_id": ids[1], "body": "ping edited 2" })).await;
        let data = search(&alice, json!({ "query": "ping", "limit": 2 })).await;
        assert_eq!(bodies(&data), ["ping number 5", "ping number 4"]);
        // The page's last message is deleted before the next page is asked for: the cursor
        // still names its place.
        alice.ok("message:delete", json!({ "conversation_id": id, "message_id": ids[3] })).await;
        let data = search(&alice, json!({ "query": "ping", "limit": 2, "before": ids[3] })).await;
        assert_eq!(bodies(&data), ["ping number 3", "ping edited 2"]);
        let data = search(&alice, json!({ "query": "ping", "limit": 2, "before": ids[1] })).await;
        assert_eq!(bodies(&data), ["ping number 1"]);
        assert_eq!(data["has_more"], false);
    }

    async fn bad_searches_are_refused_clearly(app: TestApp) {
        let alice = app.connect("alice").await;
        for (query, field) in [
            (json!({}), "query"),
            (json!({ "query": "   " }), "query"),
            (json!({ "query": "-alone" }), "query"),
            (json!({ "query": 5 }), "query"),
            (json!({ "query": "x".repeat(300) }), "query"),
            (json!({ "query": "ok", "limit": 0 }), "limit"),
            (json!({ "query": "ok", "before": "nope" }), "before"),
            (json!({ "query": "ok", "conversation_id": "nope" }), "conversation_id"),
        ] {
            let error = alice.fails("message:search", query.clone()).await;
            assert_eq!(error["code"], "invalid_payload", "{query}: {error}");
            assert_eq!(error["field"], field, "{query}: {error}");
        }
        // Too many asked for: the most there is.
        alice.ok("message:search", json!({ "query": "ok", "limit": 100000 })).await;
        let (status, body) = app.http().get("/api/search", Some(&app.token("alice"))).await;
        assert_eq!((status, body["error"]["field"].as_str()), (400, Some("query")));
    }
}

/// A language's configuration on PostgreSQL: stemming, with an index of its own built at start.
#[tokio::test]
async fn a_search_language_stems_on_postgres() {
    let Some(app) =
        spawn_app_with(Backend::Postgres, &[("CONFAB_SEARCH_LANGUAGE", "english")]).await
    else {
        return;
    };
    let alice = app.connect("alice").await;
    let id = group(&alice, "t", &[]).await;
    send(&alice, &id, "1", "we deployed it").await;
    assert_eq!(
        bodies(&search(&alice, json!({ "query": "deploys" })).await),
        ["we deployed it"]
    );
}
