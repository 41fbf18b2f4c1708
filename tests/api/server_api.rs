//! The server API: the host app's backend opening conversations, managing members and posting
//! (as a user, or system messages), with a server key.

use serde_json::{Value, json};

use crate::helpers::*;

/// `POST /api/server/conversations` with the server key; the status and the conversation.
async fn create(app: &TestApp, body: Value) -> (u16, Value) {
    let (status, reply) = app
        .http()
        .post("/api/server/conversations", Some(SERVER_KEY), &body)
        .await;
    (status, reply["data"]["conversation"].clone())
}

async fn post_as_app(app: &TestApp, conversation: &str, body: Value) -> (u16, Value) {
    app.http()
        .post(
            &format!("/api/server/conversations/{conversation}/messages"),
            Some(SERVER_KEY),
            &body,
        )
        .await
}

both_backends! {
    async fn an_order_opens_a_conversation_once_and_the_app_posts_into_it(app: TestApp) {
        let mut seller = app.connect("seller").await;
        let order = json!({
            "kind": "group", "title": "Order #1001", "owner_id": "seller",
            "member_ids": ["buyer"], "external_id": "order-1001",
        });
        let (status, conversation) = create(&app, order.clone()).await;
        assert_eq!(status, 201, "{conversation}");
        let id = conversation["id"].as_str().unwrap().to_owned();
        let roles: Vec<(&str, &str)> = conversation["members"].as_array().unwrap().iter()
            .map(|m| (m["user_id"].as_str().unwrap(), m["role"].as_str().unwrap())).collect();
        assert!(roles.contains(&("seller", "owner")) && roles.contains(&("buyer", "member")), "{roles:?}");
        // The seller's socket hears of it as of any new conversation, made by nobody in it.
        let new = expect(&mut seller, "conversation:new").await;
        assert_eq!(new["conversation"]["id"], id.as_str());
        assert_eq!(new["by"], Value::Null);

        // The same order again (a retried webhook, a double click): the same conversation.
        let (status, again) = create(&app, order).await;
        assert_eq!((status, again["id"].as_str()), (200, Some(id.as_str())));
        expect_none(&mut seller, "conversation:new").await;

        // A system message: no sender, kind "system", broadcast like any message.
        let shipped = json!({ "client_id": "shipped-1001", "body": "Your order has shipped" });
        let (status, body) = post_as_app(&app, &id, shipped.clone()).await;
        assert_eq!(status, 201, "{body}");
        let message = body["data"]["message"].clone();
        assert_eq!((message["kind"].as_str(), &message["sender_id"], message["seq"].as_i64()), (Some("system"), &Value::Null, Some(1)));
        assert_eq!(expect(&mut seller, "message:new").await["message"], message);
        // Idempotent on client_id, like a user's send.
        let (status, body) = post_as_app(&app, &id, shipped).await;
        assert_eq!((status, &body["data"]["message"]), (200, &message));
        expect_none(&mut seller, "message:new").await;

        // As a member: a user's message, seq after the system one.
        let (status, body) = post_as_app(&app, &id, json!({ "client_id": "b1", "body": "thanks!", "sender_id": "buyer" })).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["data"]["message"]["kind"], "user");
        assert_eq!(body["data"]["message"]["sender_id"], "buyer");
        assert_eq!(body["data"]["message"]["seq"], 2);
        // Users' own messages carry their kind too.
        let own = send(&seller, &id, "s1", "on its way").await;
        assert_eq!(own["kind"], "user");
        // Not as someone outside the conversation.
        let (status, body) = post_as_app(&app, &id, json!({ "client_id": "m1", "body": "hi", "sender_id": "mallory" })).await;
        assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")));

        // Nobody edits or deletes a system message.
        let error = seller.fails("message:delete", json!({ "conversation_id": id, "message_id": message["id"] })).await;
        assert_eq!(error["code"], "forbidden");

        // The buyer's conversations, as the app sees them: read state included.
        let (status, body) = app.http().get("/api/server/users/buyer/conversations", Some(SERVER_KEY)).await;
        assert_eq!(status, 200, "{body}");
        let list = body["data"]["conversations"].as_array().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0]["id"], id.as_str());
        assert_eq!(list[0]["unread_count"], 2, "the system message and the seller's; not the buyer's own");
        // And as the buyer sees it, history included.
        let buyer = app.token("buyer");
        let (_, body) = app.http().get(&format!("/api/conversations/{id}/messages?after_seq=0"), Some(&buyer)).await;
        assert_eq!(body["data"]["messages"][0], message);
    }

    async fn direct_conversations_are_one_per_pair_whatever_the_external_id(app: TestApp) {
        let (status, first) = create(&app, json!({ "kind": "direct", "user_ids": ["buyer", "seller"], "external_id": "order-1" })).await;
        assert_eq!(status, 201, "{first}");
        assert_eq!(first["kind"], "direct");
        // A second order between the same two: their direct conversation, now named by both ids.
        let (status, second) = create(&app, json!({ "kind": "direct", "user_ids": ["seller", "buyer"], "external_id": "order-2" })).await;
        assert_eq!((status, &second["id"]), (200, &first["id"]));
        let (status, by_id) = create(&app, json!({ "kind": "direct", "user_ids": ["buyer", "seller"], "external_id": "order-2" })).await;
        assert_eq!((status, &by_id["id"]), (200, &first["id"]));
        // The users reach the same one.
        let (status, body) = app.http().post("/api/conversations", Some(&app.token("buyer")), &json!({ "kind": "direct", "user_id": "seller" })).await;
        assert_eq!((status, &body["data"]["conversation"]["id"]), (200, &first["id"]));
        // An external id names one conversation: a group under a direct's id is the direct.
        let (status, same) = create(&app, json!({ "kind": "group", "title": "t", "owner_id": "x", "external_id": "order-1" })).await;
        assert_eq!((status, &same["id"]), (200, &first["id"]));
    }

    async fn the_app_adds_and_removes_members_and_members_hear_of_it(app: TestApp) {
        let mut owner = app.connect("owner").await;
        let (_, conversation) = create(&app, json!({ "kind": "group", "title": "team", "owner_id": "owner", "member_ids": ["ann"] })).await;
        let id = conversation["id"].as_str().unwrap().to_owned();
        expect(&mut owner, "conversation:new").await;
        let mut carl = app.connect("carl").await;
        let http = app.http();
        let (status, body) = http.post(&format!("/api/server/conversations/{id}/members"), Some(SERVER_KEY), &json!({ "user_ids": ["carl"] })).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["conversation"]["members"].as_array().unwrap().len(), 3);
        let new = expect(&mut carl, "conversation:new").await;
        assert_eq!((&new["conversation"]["id"], &new["by"]), (&json!(id), &Value::Null));
        let change = expect(&mut owner, "conversation:members").await;
        assert_eq!((&change["changed"][0]["user_id"], &change["by"]), (&json!("carl"), &Value::Null));
        // Carl now gets the conversation's messages.
        send(&owner, &id, "o1", "welcome").await;
        expect(&mut carl, "message:new").await;

        // Removing the owner hands the group on (to the longest-standing member).
        let (status, body) = http.delete(&format!("/api/server/conversations/{id}/members/owner"), Some(SERVER_KEY)).await;
        assert_eq!(status, 200, "{body}");
        let members = body["data"]["conversation"]["members"].as_array().unwrap().clone();
        assert_eq!(members.len(), 2);
        assert!(members.iter().any(|m| m["user_id"] == "ann" && m["role"] == "owner"), "{members:?}");
        assert_eq!(expect(&mut owner, "conversation:removed").await["conversation_id"], id.as_str());
        let change = expect(&mut carl, "conversation:members").await;
        assert_eq!(change["removed"], json!(["owner"]));
        // Removing who isn't there changes nothing.
        let (status, _) = http.delete(&format!("/api/server/conversations/{id}/members/nobody"), Some(SERVER_KEY)).await;
        assert_eq!(status, 200);
        expect_none(&mut carl, "conversation:members").await;
        // Emptied by the app and filled again, the group has an owner again: the first added.
        for gone in ["ann", "carl"] {
            let (status, _) = http.delete(&format!("/api/server/conversations/{id}/members/{gone}"), Some(SERVER_KEY)).await;
            assert_eq!(status, 200);
        }
        let (status, body) = http.post(&format!("/api/server/conversations/{id}/members"), Some(SERVER_KEY), &json!({ "user_ids": ["dora", "ed"] })).await;
        assert_eq!(status, 200, "{body}");
        let roles: Vec<(&str, &str)> = body["data"]["conversation"]["members"].as_array().unwrap().iter()
            .map(|m| (m["user_id"].as_str().unwrap(), m["role"].as_str().unwrap())).collect();
        assert!(roles.contains(&("dora", "owner")) && roles.contains(&("ed", "member")), "{roles:?}");

        // Direct conversations keep their two members.
        let (_, direct) = create(&app, json!({ "kind": "direct", "user_ids": ["ann", "carl"] })).await;
        let (status, body) = http.post(&format!("/api/server/conversations/{}/members", direct["id"].as_str().unwrap()), Some(SERVER_KEY), &json!({ "user_ids": ["x"] })).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_payload")));
        // Unknown conversations.
        let missing = uuid::Uuid::now_v7();
        let (status, _) = http.post(&format!("/api/server/conversations/{missing}/members"), Some(SERVER_KEY), &json!({ "user_ids": ["x"] })).await;
        assert_eq!(status, 404);
        let (status, _) = post_as_app(&app, &missing.to_string(), json!({ "client_id": "c", "body": "b" })).await;
        assert_eq!(status, 404);
    }

    async fn only_a_server_key_opens_the_server_api(app: TestApp) {
        let http = app.http();
        let path = "/api/server/users/alice/conversations";
        let (status, body) = http.get(path, None).await;
        assert_eq!((status, body["error"]["code"].as_str(), body["error"]["reason"].as_str()), (401, Some("unauthorized"), Some("missing")));
        // A user's token is no server key.
        let (status, body) = http.get(path, Some(&app.token("alice"))).await;
        assert_eq!((status, body["error"]["reason"].as_str()), (401, Some("invalid")));
        let (status, _) = http.get(path, Some("integration-test-server-key-012345678")).await;
        assert_eq!(status, 401, "a key one character short");
        let (status, _) = http.post("/api/server/conversations", Some(&app.token("alice")), &json!({ "kind": "direct", "user_ids": ["alice", "bob"] })).await;
        assert_eq!(status, 401);
        // A server key is no user token.
        let (status, body) = http.get("/api/conversations", Some(SERVER_KEY)).await;
        assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthorized")));
        let (status, _) = http.get(path, Some(SERVER_KEY)).await;
        assert_eq!(status, 200);

        // Bad input: the user API's codes, naming the field.
        let (status, body) = http.post_raw("/api/server/conversations", Some(SERVER_KEY), "{nope".into()).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_payload")));
        let (status, body) = http.post("/api/server/conversations", Some(SERVER_KEY), &json!({ "kind": "direct", "user_ids": ["alice"] })).await;
        assert_eq!((status, body["error"]["field"].as_str()), (400, Some("user_ids")));
        let (status, body) = http.post("/api/server/conversations", Some(SERVER_KEY), &json!({ "kind": "group", "title": "t", "owner_id": "a", "external_id": "x".repeat(201) })).await;
        assert_eq!((status, body["error"]["field"].as_str()), (413, Some("external_id")));
        let (status, body) = http.post("/api/server/conversations/not-a-uuid/messages", Some(SERVER_KEY), &json!({ "client_id": "c", "body": "b" })).await;
        assert_eq!((status, body["error"]["field"].as_str()), (400, Some("conversation_id")));
        let (_, group) = create(&app, json!({ "kind": "group", "title": "t", "owner_id": "a" })).await;
        let id = group["id"].as_str().unwrap();
        let (status, body) = post_as_app(&app, id, json!({ "client_id": "c", "body": "x".repeat(5001) })).await;
        assert_eq!((status, body["error"]["code"].as_str()), (413, Some("too_large")));
        let (status, body) = post_as_app(&app, id, json!({ "client_id": "c", "body": "b", "sender_id": 7 })).await;
        assert_eq!((status, body["error"]["field"].as_str()), (400, Some("sender_id")));
        let (status, body) = http.get("/api/server/users/%0A/conversations", Some(SERVER_KEY)).await;
        assert_eq!((status, body["error"]["field"].as_str()), (400, Some("user_id")));
    }

    async fn concurrent_creates_with_one_external_id_make_one_conversation(app: TestApp) {
        let tries = (0..8).map(|i| {
            let app = &app;
            async move {
                create(app, json!({ "kind": "group", "title": "race", "owner_id": format!("o{i}"), "external_id": "order-race" })).await
            }
        });
        let results = futures::future::join_all(tries).await;
        let ids: std::collections::HashSet<String> = results.iter().map(|(_, c)| c["id"].as_str().unwrap().to_owned()).collect();
        assert_eq!(ids.len(), 1, "{results:?}");
        assert_eq!(results.iter().filter(|(s, _)| *s == 201).count(), 1, "{results:?}");
    }
}

#[tokio::test]
async fn rotated_keys_all_work_and_no_keys_means_no_server_api() {
    let app = spawn_app_with(
        Backend::Sqlite,
        &[(
            "CONFAB_SERVER_API_KEYS",
            "old-key-abcdefghijklmnop,new-key-abcdefghijklmnop",
        )],
    )
    .await
    .unwrap();
    let http = app.http();
    for key in ["old-key-abcdefghijklmnop", "new-key-abcdefghijklmnop"] {
        let (status, _) = http
            .get("/api/server/users/a/conversations", Some(key))
            .await;
        assert_eq!(status, 200, "{key}");
    }
    let (status, _) = http
        .get("/api/server/users/a/conversations", Some(SERVER_KEY))
        .await;
    assert_eq!(status, 401);

    let off = spawn_app_with(Backend::Sqlite, &[("CONFAB_SERVER_API_KEYS", "")])
        .await
        .unwrap();
    let (status, _) = off
        .http()
        .get("/api/server/users/a/conversations", Some(SERVER_KEY))
        .await;
    assert_eq!(status, 401);
}
