//! Read marks: receipts to the conversation, unread counts in the list.

use serde_json::{Value, json};

use crate::helpers::*;

fn listed<'a>(list: &'a Value, id: &str) -> &'a Value {
    list["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap()
}

both_backends! {
    async fn reading_sends_receipts_to_members_and_own_devices(app: TestApp) {
        let alice = app.connect("alice").await;
        let mut bob = app.connect("bob").await;
        let mut bob_phone = app.connect("bob").await;
        let id = group(&alice, "team", &["bob"]).await;
        for i in 0..5 {
            send(&alice, &id, &format!("k{i}"), "hi").await;
        }
        let mut alice = alice;
        let data = bob.ok("conversation:read", json!({ "conversation_id": id, "seq": 3 })).await;
        assert_eq!(data, json!({ "conversation_id": id, "last_read_seq": 3, "unread_count": 2 }));
        let receipt = json!({ "conversation_id": id, "user_id": "bob", "seq": 3 });
        assert_eq!(expect(&mut alice, "receipt").await, receipt);
        assert_eq!(expect(&mut bob_phone, "receipt").await, receipt, "badges clear on every device");
        expect_none(&mut bob, "receipt").await;
        // Never backwards, and nothing to announce.
        let data = bob.ok("conversation:read", json!({ "conversation_id": id, "seq": 1 })).await;
        assert_eq!(data["last_read_seq"], 3);
        expect_none(&mut alice, "receipt").await;
        // Clamped to the last message.
        let data = bob.ok("conversation:read", json!({ "conversation_id": id, "seq": 1000 })).await;
        assert_eq!(data["last_read_seq"], 5);
        assert_eq!(expect(&mut alice, "receipt").await["seq"], 5);
        // Everyone's read mark is part of the conversation ("seen by" survives a reload).
        let list = alice.ok("conversation:list", json!({})).await;
        let bob_member = listed(&list, &id)["members"].as_array().unwrap().iter().find(|m| m["user_id"] == "bob").unwrap().clone();
        assert_eq!(bob_member["last_read_seq"], 5);
    }

    async fn read_marks_need_membership_and_sane_input(app: TestApp) {
        let alice = app.connect("alice").await;
        let mallory = app.connect("mallory").await;
        let id = group(&alice, "team", &[]).await;
        let e = mallory.fails("conversation:read", json!({ "conversation_id": id, "seq": 1 })).await;
        assert_eq!(e["code"], "not_found");
        let e = alice.fails("conversation:read", json!({ "conversation_id": id, "seq": -1 })).await;
        assert_eq!(e["field"], "seq");
        let e = alice.fails("conversation:read", json!({ "conversation_id": id })).await;
        assert_eq!(e["field"], "seq");
    }

    async fn unread_counts_skip_own_and_deleted_messages(app: TestApp) {
        let alice = app.connect("alice").await;
        let bob = app.connect("bob").await;
        let id = group(&alice, "team", &["bob"]).await;
        let mut sent = Vec::new();
        for i in 0..4 {
            sent.push(send(&alice, &id, &format!("a{i}"), "from alice").await);
        }
        send(&bob, &id, "b0", "from bob").await;
        alice.ok("message:delete", json!({ "conversation_id": id, "message_id": sent[1]["id"] })).await;
        let list = bob.ok("conversation:list", json!({})).await;
        let c = listed(&list, &id);
        assert_eq!(c["last_read_seq"], 0);
        assert_eq!(c["unread_count"], 3, "4 from alice, one deleted; bob's own don't count: {c}");
        let list = alice.ok("conversation:list", json!({})).await;
        assert_eq!(listed(&list, &id)["unread_count"], 1, "alice has bob's one");
        bob.ok("conversation:read", json!({ "conversation_id": id, "seq": 3 })).await;
        let list = bob.ok("conversation:list", json!({})).await;
        assert_eq!(listed(&list, &id)["unread_count"], 1);
        let (_, body) = app.http().get("/api/conversations", Some(&app.token("bob"))).await;
        assert_eq!(listed(&body["data"], &id)["unread_count"], 1, "the HTTP list too");
        assert_eq!(listed(&body["data"], &id)["last_read_seq"], 3);
    }
}
