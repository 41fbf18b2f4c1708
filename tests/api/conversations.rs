//! Creating conversations, listing them, and changing who is in them.

use serde_json::{Value, json};

use crate::helpers::*;

fn member_ids(conversation: &Value) -> Vec<String> {
    let mut ids: Vec<String> = conversation["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

fn role_of(conversation: &Value, user: &str) -> String {
    conversation["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["user_id"] == user)
        .map(|m| m["role"].as_str().unwrap().to_owned())
        .unwrap_or_else(|| panic!("{user} is not a member of {conversation}"))
}

both_backends! {
    async fn a_direct_conversation_is_one_per_pair(app: TestApp) {
        let alice = app.connect("alice").await;
        let mut alice_tab = app.connect("alice").await;
        let mut bob = app.connect("bob").await;
        let first = alice.ok("conversation:create", json!({ "kind": "direct", "user_id": "bob" })).await;
        let c = &first["conversation"];
        assert_eq!(c["kind"], "direct");
        assert_eq!(c["title"], Value::Null);
        assert_eq!(c["last_seq"], 0);
        assert_eq!(c["last_message"], Value::Null);
        assert_eq!(member_ids(c), ["alice", "bob"]);
        assert!(c["created_at"].as_str().unwrap().ends_with('Z'));
        // Both users' sockets hear of it, except the socket that created it.
        assert_eq!(expect(&mut bob, "conversation:new").await["conversation"]["id"], c["id"]);
        assert_eq!(expect(&mut alice_tab, "conversation:new").await["conversation"]["id"], c["id"]);
        // Asking again, from either side, returns the same conversation and announces nothing.
        let again = bob.ok("conversation:create", json!({ "kind": "direct", "user_id": "alice" })).await;
        assert_eq!(again["conversation"]["id"], c["id"]);
        let again = alice.ok("conversation:create", json!({ "kind": "direct", "user_id": "bob" })).await;
        assert_eq!(again["conversation"]["id"], c["id"]);
        expect_none(&mut alice_tab, "conversation:new").await;
    }

    async fn a_direct_conversation_with_yourself_is_invalid(app: TestApp) {
        let alice = app.connect("alice").await;
        let e = alice.fails("conversation:create", json!({ "kind": "direct", "user_id": "alice" })).await;
        assert_eq!(e["code"], "invalid_payload");
        assert_eq!(e["field"], "user_id");
    }

    async fn a_direct_conversation_with_someone_who_never_connected_works(app: TestApp) {
        let alice = app.connect("alice").await;
        let data = alice.ok("conversation:create", json!({ "kind": "direct", "user_id": "newcomer" })).await;
        let id = data["conversation"]["id"].as_str().unwrap().to_owned();
        send(&alice, &id, "c1", "welcome").await;
        // When they do connect, the conversation and its message are there.
        let newcomer = app.connect("newcomer").await;
        let list = newcomer.ok("conversation:list", json!({})).await;
        assert_eq!(list["conversations"][0]["id"], id.as_str());
        assert_eq!(list["conversations"][0]["last_message"]["body"], "welcome");
    }

    async fn a_group_has_an_owner_and_members(app: TestApp) {
        let alice = app.connect("alice").await;
        let mut bob = app.connect("bob").await;
        let data = alice
            .ok("conversation:create", json!({ "kind": "group", "title": "  Team  ", "member_ids": ["bob", "carol", "bob", "alice"] }))
            .await;
        let c = &data["conversation"];
        assert_eq!(c["kind"], "group");
        assert_eq!(c["title"], "Team");
        assert_eq!(member_ids(c), ["alice", "bob", "carol"]);
        assert_eq!(role_of(c, "alice"), "owner");
        assert_eq!(role_of(c, "bob"), "member");
        assert_eq!(c["members"][0]["user_id"], "alice", "the owner is listed first");
        assert_eq!(expect(&mut bob, "conversation:new").await["conversation"]["id"], c["id"]);
    }

    async fn group_titles_and_sizes_are_checked(app: TestApp) {
        let alice = app.connect("alice").await;
        let e = alice.fails("conversation:create", json!({ "kind": "group", "title": "   ", "member_ids": [] })).await;
        assert_eq!((e["code"].as_str(), e["field"].as_str()), (Some("invalid_payload"), Some("title")));
        let e = alice.fails("conversation:create", json!({ "kind": "group", "title": "t".repeat(201), "member_ids": [] })).await;
        assert_eq!(e["code"], "too_large");
        let e = alice.fails("conversation:create", json!({ "kind": "group", "member_ids": [] })).await;
        assert_eq!(e["field"], "title");
        let e = alice.fails("conversation:create", json!({ "kind": "channel" })).await;
        assert_eq!(e["field"], "kind");
        let e = alice.fails("conversation:create", json!({ "kind": "group", "title": "t", "member_ids": ["ok", 5] })).await;
        assert_eq!(e["code"], "invalid_payload");
        let e = alice.fails("conversation:create", json!({ "kind": "direct" })).await;
        assert_eq!(e["field"], "user_id");
    }

    async fn conversations_are_listed_by_recent_activity(app: TestApp) {
        let alice = app.connect("alice").await;
        let first = group(&alice, "first", &["bob"]).await;
        let second = group(&alice, "second", &["bob"]).await;
        let list = alice.ok("conversation:list", json!({})).await;
        let ids: Vec<&str> = list["conversations"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
        assert_eq!(ids, [second.as_str(), first.as_str()]);
        // A message moves a conversation to the top.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let m = send(&alice, &first, "c1", "bump").await;
        let list = alice.ok("conversation:list", json!({})).await;
        assert_eq!(list["conversations"][0]["id"], first.as_str());
        assert_eq!(list["conversations"][0]["last_seq"], 1);
        assert_eq!(list["conversations"][0]["last_message"], m);
        // Only one's own conversations are listed; the payload may be omitted.
        let carol = app.connect("carol").await;
        let list = carol.emit_with_ack("conversation:list", Value::Null).await.unwrap();
        assert_eq!(list["data"]["conversations"], json!([]));
    }

    async fn owners_add_members_who_then_receive_without_reconnecting(app: TestApp) {
        let alice = app.connect("alice").await;
        let mut bob = app.connect("bob").await;
        let mut carol = app.connect("carol").await;
        let id = group(&alice, "team", &["bob"]).await;
        expect(&mut bob, "conversation:new").await;
        let data = alice.ok("conversation:members:add", json!({ "conversation_id": id, "user_ids": ["carol", "bob"] })).await;
        assert_eq!(member_ids(&data["conversation"]), ["alice", "bob", "carol"]);
        let new = expect(&mut carol, "conversation:new").await;
        assert_eq!(new["conversation"]["id"], id.as_str());
        assert_eq!(new["by"], "alice", "who added carol");
        // Bob, already a member, is told only what changed: carol joined (bob's re-add is a no-op).
        let members = expect(&mut bob, "conversation:members").await;
        assert_eq!(members["conversation_id"], id.as_str());
        assert_eq!(members["by"], "alice", "who made the change");
        assert_eq!(member_ids(&json!({ "members": members["changed"] })), ["carol"]);
        assert_eq!(role_of(&json!({ "members": members["changed"] }), "carol"), "member");
        assert_eq!(members["removed"], json!([]));
        // Adding only existing members changes nothing and announces nothing.
        alice.ok("conversation:members:add", json!({ "conversation_id": id, "user_ids": ["bob"] })).await;
        expect_none(&mut bob, "conversation:members").await;
        let m = send(&alice, &id, "c1", "hi carol").await;
        assert_eq!(expect(&mut carol, "message:new").await["message"], m);
    }

    async fn only_owners_and_admins_change_members(app: TestApp) {
        let alice = app.connect("alice").await;
        let bob = app.connect("bob").await;
        let stranger = app.connect("stranger").await;
        let id = group(&alice, "team", &["bob"]).await;
        let e = bob.fails("conversation:members:add", json!({ "conversation_id": id, "user_ids": ["carol"] })).await;
        assert_eq!(e["code"], "forbidden");
        let e = bob.fails("conversation:members:remove", json!({ "conversation_id": id, "user_ids": ["alice"] })).await;
        assert_eq!(e["code"], "forbidden");
        let e = stranger.fails("conversation:members:add", json!({ "conversation_id": id, "user_ids": ["stranger"] })).await;
        assert_eq!(e["code"], "not_found");
        let e = alice.fails("conversation:members:remove", json!({ "conversation_id": id, "user_ids": ["alice"] })).await;
        assert_eq!(e["code"], "invalid_payload");
        let e = alice.fails("conversation:members:add", json!({ "conversation_id": id, "user_ids": [] })).await;
        assert_eq!(e["field"], "user_ids");
        let missing = uuid::Uuid::now_v7().to_string();
        let e = alice.fails("conversation:members:add", json!({ "conversation_id": missing, "user_ids": ["x"] })).await;
        assert_eq!(e["code"], "not_found");
    }

    async fn direct_conversations_have_fixed_members(app: TestApp) {
        let alice = app.connect("alice").await;
        let data = alice.ok("conversation:create", json!({ "kind": "direct", "user_id": "bob" })).await;
        let id = &data["conversation"]["id"];
        for event in ["conversation:members:add", "conversation:members:remove"] {
            let e = alice.fails(event, json!({ "conversation_id": id, "user_ids": ["bob"] })).await;
            assert_eq!(e["code"], "invalid_payload", "{event}");
        }
        let e = alice.fails("conversation:leave", json!({ "conversation_id": id })).await;
        assert_eq!(e["code"], "invalid_payload");
    }

    async fn a_removed_member_stops_receiving_at_once(app: TestApp) {
        let alice = app.connect("alice").await;
        let mut bob = app.connect("bob").await;
        let mut bob_tab = app.connect("bob").await;
        let mut carol = app.connect("carol").await;
        let id = group(&alice, "team", &["bob", "carol"]).await;
        send(&alice, &id, "c1", "before").await;
        expect(&mut bob, "message:new").await;
        expect(&mut bob_tab, "message:new").await;
        let data = alice.ok("conversation:members:remove", json!({ "conversation_id": id, "user_ids": ["bob"] })).await;
        assert_eq!(member_ids(&data["conversation"]), ["alice", "carol"]);
        for socket in [&mut bob, &mut bob_tab] {
            assert_eq!(expect(socket, "conversation:removed").await, json!({ "conversation_id": id }));
        }
        let members = expect(&mut carol, "conversation:members").await;
        assert_eq!(members, json!({ "conversation_id": id, "changed": [], "removed": ["bob"], "member_count": 2, "by": "alice" }));
        send(&alice, &id, "c2", "after").await;
        expect(&mut carol, "message:new").await;
        expect_none(&mut bob, "message:new").await;
        expect_none(&mut bob_tab, "message:new").await;
        // And bob can no longer read or write it.
        let e = bob.fails("message:history", json!({ "conversation_id": id })).await;
        assert_eq!(e["code"], "not_found");
        let e = bob.fails("message:send", json!({ "conversation_id": id, "client_id": "b1", "body": "hey" })).await;
        assert_eq!(e["code"], "not_found");
    }

    async fn the_member_cap_holds(app: TestApp) {
        drop(app);
        let app = spawn_app_with(Backend::Sqlite, &[("CONFAB_MAX_GROUP_MEMBERS", "3")]).await.unwrap();
        let alice = app.connect("alice").await;
        let e = alice.fails("conversation:create", json!({ "kind": "group", "title": "t", "member_ids": ["b", "c", "d"] })).await;
        assert_eq!(e["code"], "too_large");
        let id = group(&alice, "t", &["b", "c"]).await;
        let e = alice.fails("conversation:members:add", json!({ "conversation_id": id, "user_ids": ["d"] })).await;
        assert_eq!(e["code"], "too_large");
    }

    async fn leaving_hands_ownership_on(app: TestApp) {
        let alice = app.connect("alice").await;
        let mut alice_tab = app.connect("alice").await;
        let mut bob = app.connect("bob").await;
        let id = group(&alice, "team", &["bob", "carol"]).await;
        expect(&mut bob, "conversation:new").await;
        expect(&mut alice_tab, "conversation:new").await;
        let data = alice.ok("conversation:leave", json!({ "conversation_id": id })).await;
        assert_eq!(data, json!({ "conversation_id": id }));
        assert_eq!(expect(&mut alice_tab, "conversation:removed").await, json!({ "conversation_id": id }));
        let members = expect(&mut bob, "conversation:members").await;
        assert_eq!(members["removed"], json!(["alice"]));
        assert_eq!(members["by"], "alice", "a departure is by the one who left");
        let changed = json!({ "members": members["changed"] });
        assert_eq!(member_ids(&changed), ["bob"], "only bob's role changed");
        assert_eq!(role_of(&changed, "bob"), "owner", "the longest-standing member inherits");
        // The new owner can manage the group.
        bob.ok("conversation:members:add", json!({ "conversation_id": id, "user_ids": ["dave"] })).await;
        let e = alice.fails("conversation:leave", json!({ "conversation_id": id })).await;
        assert_eq!(e["code"], "not_found");
    }
}
