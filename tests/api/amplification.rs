//! Membership requests are charged by the members they touch, not by the request: one event
//! naming 999 users costs 999 from the caller's budget (`CONFAB_RATE_MEMBERS`, burst 1,000,
//! 20 a second), so a user can't turn small requests into user rows, memberships and
//! `conversation:new` events by the thousand. And being added needs no consent, so leaving
//! sticks: who left a group can't be added back by its members.

use serde_json::{Value, json};

use crate::helpers::*;

fn made_up(n: usize, prefix: &str) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// The harness lifts every budget; these tests run with the defaults.
const DEFAULT_BUDGET: (&str, &str) = ("CONFAB_RATE_MEMBERS", "20/1000");

async fn conversations(client: &confab_sio_client::Client) -> Vec<Value> {
    client.ok("conversation:list", json!({})).await["conversations"]
        .as_array()
        .unwrap()
        .clone()
}

both_backends! {
    async fn a_flood_of_large_creates_gets_one_group_through(app: TestApp) {
        let app = app.with(&[DEFAULT_BUDGET]).await;
        let alice = app.connect("alice").await;
        // The reported attack: 60 creates of 999 made-up members, as fast as possible.
        let creates = (0..60).map(|i| {
            alice.emit_with_ack(
                "conversation:create",
                json!({ "kind": "group", "title": format!("spam {i}"), "member_ids": made_up(999, &format!("x{i}")) }),
            )
        });
        let answers = futures::future::join_all(creates).await;
        let mut created = 0;
        for answer in answers {
            let answer = answer.expect("an ack");
            if answer["ok"] == true {
                created += 1;
            } else {
                assert_eq!(answer["error"]["code"], "rate_limited", "{answer}");
                // A wait of about a budget's refill, not a blind retry.
                let wait = answer["error"]["retry_after_ms"].as_u64().unwrap();
                assert!(wait > 30_000, "{wait}");
            }
        }
        assert_eq!(created, 1);
        // A refused request changes nothing.
        assert_eq!(conversations(&alice).await.len(), 1);

        // The HTTP route draws from the same budget.
        let (status, body) = app
            .http()
            .post(
                "/api/conversations",
                Some(&app.token("alice")),
                &json!({ "kind": "group", "title": "http", "member_ids": made_up(50, "h") }),
            )
            .await;
        assert_eq!(status, 429, "{body}");
        assert_eq!(body["error"]["code"], "rate_limited");
    }

    async fn adds_and_removes_are_charged_per_member(app: TestApp) {
        let app = app.with(&[("CONFAB_RATE_MEMBERS", "1/10"), ("CONFAB_MAX_GROUP_MEMBERS", "11")]).await;
        let alice = app.connect("alice").await;
        let id = group(&alice, "small", &["b1", "b2", "b3"]).await;
        // 3 spent of 10: an add of 8 doesn't fit, an add of 7 does.
        let e = alice.fails("conversation:members:add", json!({ "conversation_id": id, "user_ids": made_up(8, "c") })).await;
        assert_eq!(e["code"], "rate_limited");
        alice.ok("conversation:members:add", json!({ "conversation_id": id, "user_ids": made_up(7, "c") })).await;
        let e = alice.fails("conversation:members:remove", json!({ "conversation_id": id, "user_ids": ["b1"] })).await;
        assert_eq!(e["code"], "rate_limited");
        // More than the whole budget in one request can never fit: too large, not "wait".
        let e = alice.fails("conversation:members:add", json!({ "conversation_id": id, "user_ids": made_up(11, "d") })).await;
        assert_eq!(e["code"], "too_large", "{e}");
        // Another user's budget is their own.
        let bob = app.connect("bob").await;
        group(&bob, "bob's", &["b1"]).await;
    }

    async fn who_left_a_group_cant_be_added_back(app: TestApp) {
        let alice = app.connect("alice").await;
        let mut bob = app.connect("bob").await;
        let id = group(&alice, "team", &["bob", "carol"]).await;
        expect(&mut bob, "conversation:new").await;
        bob.ok("conversation:leave", json!({ "conversation_id": id })).await;

        let e = alice.fails("conversation:members:add", json!({ "conversation_id": id, "user_ids": ["bob", "dave"] })).await;
        assert_eq!(e["code"], "forbidden");
        assert!(e["message"].as_str().unwrap().contains("left"), "{e}");
        expect_none(&mut bob, "conversation:new").await;
        // Refused whole: dave wasn't added either.
        let list = alice.ok("conversation:list", json!({})).await;
        let members: Vec<&str> = list["conversations"][0]["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["user_id"].as_str().unwrap())
            .collect();
        assert!(!members.contains(&"dave") && !members.contains(&"bob"), "{members:?}");

        // Removed by an admin is the admin's decision, not the member's: they can be re-added
        // (within the admin's budget).
        alice.ok("conversation:members:remove", json!({ "conversation_id": id, "user_ids": ["carol"] })).await;
        alice.ok("conversation:members:add", json!({ "conversation_id": id, "user_ids": ["carol"] })).await;
        // A new group is a new question.
        group(&alice, "another", &["bob"]).await;
        expect(&mut bob, "conversation:new").await;
    }
}
