//! Reading history and catching up with `sync`.

use serde_json::{Value, json};

use crate::helpers::*;

fn seqs(page: &Value) -> Vec<i64> {
    page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect()
}

async fn conversation_with(app: &TestApp, n: usize) -> (confab_sio_client::Client, String) {
    let alice = app.connect("alice").await;
    let id = group(&alice, "history", &["bob"]).await;
    for i in 0..n {
        send(&alice, &id, &format!("k{i}"), &format!("m{i}")).await;
    }
    (alice, id)
}

both_backends! {
    async fn history_pages_in_both_directions(app: TestApp) {
        let (alice, id) = conversation_with(&app, 12).await;
        let latest = alice.ok("message:history", json!({ "conversation_id": id, "limit": 5 })).await;
        assert_eq!(seqs(&latest), [8, 9, 10, 11, 12]);
        assert_eq!(latest["has_more"], true);
        let older = alice.ok("message:history", json!({ "conversation_id": id, "limit": 5, "before_seq": 8 })).await;
        assert_eq!(seqs(&older), [3, 4, 5, 6, 7]);
        assert_eq!(older["has_more"], true);
        let oldest = alice.ok("message:history", json!({ "conversation_id": id, "limit": 5, "before_seq": 3 })).await;
        assert_eq!(seqs(&oldest), [1, 2]);
        assert_eq!(oldest["has_more"], false);
        let newer = alice.ok("message:history", json!({ "conversation_id": id, "limit": 5, "after_seq": 9 })).await;
        assert_eq!(seqs(&newer), [10, 11, 12]);
        assert_eq!(newer["has_more"], false);
        let forward = alice.ok("message:history", json!({ "conversation_id": id, "limit": 2, "after_seq": 0 })).await;
        assert_eq!(seqs(&forward), [1, 2]);
        assert_eq!(forward["has_more"], true);
        let between = alice.ok("message:history", json!({ "conversation_id": id, "limit": 3, "after_seq": 2, "before_seq": 9 })).await;
        assert_eq!(seqs(&between), [3, 4, 5]);
        assert_eq!(between["has_more"], true);
        let all = alice.ok("message:history", json!({ "conversation_id": id })).await;
        assert_eq!(seqs(&all), (1..=12).collect::<Vec<_>>());
        assert_eq!(all["has_more"], false);
        assert_eq!(all["messages"][0]["body"], "m0");
    }

    async fn history_limits_and_arguments_are_checked(app: TestApp) {
        let (alice, id) = conversation_with(&app, 3).await;
        let page = alice.ok("message:history", json!({ "conversation_id": id, "limit": 10_000 })).await;
        assert_eq!(seqs(&page), [1, 2, 3], "large limits are capped, not refused");
        for (payload, field) in [
            (json!({ "conversation_id": id, "limit": 0 }), "limit"),
            (json!({ "conversation_id": id, "limit": "ten" }), "limit"),
            (json!({ "conversation_id": id, "before_seq": -1 }), "before_seq"),
            (json!({ "conversation_id": id, "after_seq": 1.5 }), "after_seq"),
            (json!({ "conversation_id": "nope" }), "conversation_id"),
            (json!({}), "conversation_id"),
        ] {
            let e = alice.fails("message:history", payload.clone()).await;
            assert_eq!(e["code"], "invalid_payload", "{payload}");
            assert_eq!(e["field"], field, "{payload}");
        }
        let stranger = app.connect("stranger").await;
        let e = stranger.fails("message:history", json!({ "conversation_id": id })).await;
        assert_eq!(e["code"], "not_found");
    }

    async fn sync_returns_exactly_what_was_missed(app: TestApp) {
        let alice = app.connect("alice").await;
        let bob = app.connect("bob").await;
        let team = group(&alice, "team", &["bob"]).await;
        let quiet = group(&alice, "quiet", &["bob"]).await;
        let secret = group(&alice, "secret", &[]).await;
        for i in 0..3 {
            send(&alice, &team, &format!("a{i}"), "before").await;
        }
        send(&alice, &secret, "s", "not for bob").await;
        // Bob saw seq 3 of team, everything of quiet; then goes away while more is said.
        bob.disconnect().await;
        for i in 0..4 {
            send(&alice, &team, &format!("b{i}"), &format!("missed {i}")).await;
        }
        let bob = app.connect("bob").await;
        let data = bob.ok("sync", json!({ "cursors": { team.clone(): 3, quiet.clone(): 0, secret.clone(): 0 } })).await;
        let updates = data["updates"].as_array().unwrap();
        assert_eq!(updates.len(), 2, "only bob's conversations: {data}");
        let team_update = updates.iter().find(|u| u["conversation_id"] == team.as_str()).unwrap();
        assert_eq!(seqs(team_update), [4, 5, 6, 7]);
        assert_eq!(team_update["messages"][0]["body"], "missed 0");
        assert_eq!(team_update["has_more"], false);
        let quiet_update = updates.iter().find(|u| u["conversation_id"] == quiet.as_str()).unwrap();
        assert_eq!(quiet_update["messages"], json!([]));
        let up_to_date = bob.ok("sync", json!({ "cursors": { team.clone(): 7 } })).await;
        assert_eq!(up_to_date["updates"][0]["messages"], json!([]));
    }

    async fn sync_returns_edits_and_deletes_missed_since_the_last_sync(app: TestApp) {
        let alice = app.connect("alice").await;
        let bob = app.connect("bob").await;
        let id = group(&alice, "team", &["bob"]).await;
        let mut sent: Vec<Value> = Vec::new();
        for i in 0..3 {
            sent.push(send(&alice, &id, &format!("k{i}"), "original").await);
        }
        let first = bob.ok("sync", json!({ "cursors": { id.clone(): 0 } })).await;
        let since = first["server_time"].as_str().expect("server_time").to_owned();
        assert_eq!(first["updates"][0]["changed"], json!([]));
        bob.disconnect().await;
        // While bob is away: an edit, a delete, and a new message.
        let by_seq = |seq: i64| sent.iter().find(|m| m["seq"] == seq).unwrap()["id"].clone();
        alice.ok("message:edit", json!({ "conversation_id": id, "message_id": by_seq(1), "body": "edited" })).await;
        alice.ok("message:delete", json!({ "conversation_id": id, "message_id": by_seq(2) })).await;
        send(&alice, &id, "k3", "new").await;
        let bob = app.connect("bob").await;
        let data = bob.ok("sync", json!({ "cursors": { id.clone(): 3 }, "since": since })).await;
        let update = &data["updates"][0];
        assert_eq!(seqs(update), [4]);
        let changed: Vec<(i64, Value)> = update["changed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["seq"].as_i64().unwrap(), m["body"].clone()))
            .collect();
        assert_eq!(changed, [(1, json!("edited")), (2, Value::Null)]);
        // Without `since`, only new messages.
        let data = bob.ok("sync", json!({ "cursors": { id.clone(): 3 } })).await;
        assert_eq!(data["updates"][0]["changed"], json!([]));
        let e = bob.fails("sync", json!({ "cursors": {}, "since": "last tuesday" })).await;
        assert_eq!(e["field"], "since");
    }

    async fn sync_pages_at_a_hundred_per_conversation(app: TestApp) {
        let alice = app.connect("alice").await;
        let id = group(&alice, "busy", &[]).await;
        let sends = (0..130).map(|i| {
            alice.emit_with_ack("message:send", json!({ "conversation_id": id, "client_id": format!("k{i}"), "body": "x" }))
        });
        for ack in futures::future::join_all(sends).await {
            assert_eq!(ack.unwrap()["ok"], true);
        }
        let data = alice.ok("sync", json!({ "cursors": { id.clone(): 0 } })).await;
        let update = &data["updates"][0];
        assert_eq!(seqs(update), (1..=100).collect::<Vec<_>>());
        assert_eq!(update["has_more"], true);
        let rest = alice.ok("message:history", json!({ "conversation_id": id, "after_seq": 100, "limit": 200 })).await;
        assert_eq!(seqs(&rest), (101..=130).collect::<Vec<_>>());
    }

    async fn sync_pages_through_more_changes_than_one_answer_holds(app: TestApp) {
        let alice = app.connect("alice").await;
        let bob = app.connect("bob").await;
        let id = group(&alice, "busy", &["bob"]).await;
        let sends = (0..130).map(|i| {
            alice.ok("message:send", json!({ "conversation_id": id, "client_id": format!("k{i}"), "body": "original" }))
        });
        let sent: Vec<Value> = futures::future::join_all(sends).await;
        let first = bob.ok("sync", json!({ "cursors": { id.clone(): 130 } })).await;
        let since = first["server_time"].as_str().unwrap().to_owned();
        // 125 of the 130 are edited while bob is away (every one but seqs 1, 2, 64, 65, 130).
        let skip = [1, 2, 64, 65, 130];
        let edits = sent.iter().filter(|d| !skip.contains(&d["message"]["seq"].as_i64().unwrap())).map(|d| {
            alice.ok("message:edit", json!({ "conversation_id": id, "message_id": d["message"]["id"], "body": "edited" }))
        });
        futures::future::join_all(edits).await;
        let expected: Vec<i64> = (1..=130).filter(|s| !skip.contains(s)).collect();

        let changed_seqs = |update: &Value| -> Vec<i64> {
            update["changed"].as_array().unwrap().iter().map(|m| {
                assert_eq!(m["body"], "edited");
                m["seq"].as_i64().unwrap()
            }).collect()
        };
        let page = bob.ok("sync", json!({ "cursors": { id.clone(): 130 }, "since": since })).await;
        let update = &page["updates"][0];
        assert_eq!(changed_seqs(update), expected[..100]);
        assert_eq!(update["changed_has_more"], true);
        assert_eq!(update["has_more"], false);
        let last = expected[99];
        let page = bob
            .ok("sync", json!({ "cursors": { id.clone(): 130 }, "since": since, "changed_after": { id.clone(): last } }))
            .await;
        let update = &page["updates"][0];
        assert_eq!(changed_seqs(update), expected[100..]);
        assert_eq!(update["changed_has_more"], false);
        // Exactly a page full says there are no more.
        let page = bob
            .ok("sync", json!({ "cursors": { id.clone(): 130 }, "since": since, "changed_after": { id.clone(): expected[24] } }))
            .await;
        assert_eq!(changed_seqs(&page["updates"][0]), expected[25..]);
        assert_eq!(page["updates"][0]["changed_has_more"], false);
        // Changes are only ever returned at or below the cursor.
        let page = bob
            .ok("sync", json!({ "cursors": { id.clone(): 50 }, "since": since, "changed_after": { id.clone(): 10 } }))
            .await;
        let below: Vec<i64> = expected.iter().copied().filter(|s| (11..=50).contains(s)).collect();
        assert_eq!(changed_seqs(&page["updates"][0]), below);
        assert_eq!(page["updates"][0]["changed_has_more"], false);
    }

    async fn sync_arguments_are_checked(app: TestApp) {
        let alice = app.connect("alice").await;
        let id = uuid::Uuid::now_v7().to_string();
        for (payload, code) in [
            (json!({}), "invalid_payload"),
            (json!({ "cursors": [] }), "invalid_payload"),
            (json!({ "cursors": { "x": 1 } }), "invalid_payload"),
            (json!({ "cursors": { id.clone(): -1 } }), "invalid_payload"),
            (json!({ "cursors": { id.clone(): "1" } }), "invalid_payload"),
            (json!({ "cursors": { id.clone(): 1 }, "changed_after": { id.clone(): 0 } }), "invalid_payload"),
            (json!({ "cursors": {}, "since": "2026-11-25T20:15:48.123Z", "changed_after": { id.clone(): 0 } }), "invalid_payload"),
        ] {
            let e = alice.fails("sync", payload.clone()).await;
            assert_eq!(e["code"], code, "{payload}");
        }
        let many: serde_json::Map<String, Value> = (0..1001).map(|_| (uuid::Uuid::now_v7().to_string(), json!(0))).collect();
        let e = alice.fails("sync", json!({ "cursors": many })).await;
        assert_eq!(e["code"], "too_large");
        let unknown = alice.ok("sync", json!({ "cursors": { id: 0 } })).await;
        assert_eq!(unknown["updates"], json!([]));
    }
}
