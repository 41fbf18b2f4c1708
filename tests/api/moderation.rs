//! Moderation by the host app (server API): bans, and erasing a user.

use confab_sio_client::{Client, ConnectError, Incoming};
use serde_json::{Value, json};

use crate::helpers::*;

/// Waits until the server closes `client`'s connection.
async fn expect_closed(client: &mut Client) {
    let deadline = tokio::time::Instant::now() + EVENT_WAIT;
    loop {
        match tokio::time::timeout_at(deadline, client.next_event()).await {
            Ok(Some(Incoming::Disconnected { .. })) | Ok(None) => return,
            Ok(Some(Incoming::Event(_))) => continue,
            Err(_) => panic!("the socket was not closed"),
        }
    }
}

/// The handshake's refusal reason for `user`.
async fn refused_reason(app: &TestApp, user: &str) -> Option<String> {
    match app.connect_auth(json!({ "token": app.token(user) })).await {
        Err(ConnectError::Refused { data, .. }) => {
            data.and_then(|d| d["reason"].as_str().map(str::to_owned))
        }
        Err(other) => panic!("unexpected {other}"),
        Ok(_) => None,
    }
}

async fn as_app(app: &TestApp, method: &str, path: &str, body: Value) -> (u16, Value) {
    let http = app.http();
    match method {
        "POST" => http.post(path, Some(SERVER_KEY), &body).await,
        "DELETE" => http.delete(path, Some(SERVER_KEY)).await,
        _ => unreachable!(),
    }
}

both_backends! {
    async fn a_ban_closes_the_sockets_and_refuses_the_tokens_until_lifted(app: TestApp) {
        let mut alice = app.connect("alice").await;
        let mut alice_too = app.connect("alice").await;
        let bob = app.connect("bob").await;
        let id = group(&bob, "g", &["alice"]).await;
        let said = send(&alice, &id, "a1", "buy my stuff").await;

        let (status, body) = as_app(&app, "POST", "/api/server/users/alice/ban", json!({ "reason": "spam" })).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"], json!({ "user_id": "alice", "ban": { "user_id": "alice", "until": null, "reason": "spam" } }));
        for socket in [&mut alice, &mut alice_too] {
            let ended = expect(socket, "session:ended").await;
            assert_eq!(ended, json!({ "reason": "banned", "until": null }));
            expect_closed(socket).await;
        }
        assert!(bob.is_connected());
        // Tokens are refused, on sockets and over HTTP, saying why.
        assert_eq!(refused_reason(&app, "alice").await.as_deref(), Some("banned"));
        let (status, body) = app.http().get("/api/conversations", Some(&app.token("alice"))).await;
        assert_eq!((status, body["error"]["reason"].as_str()), (401, Some("banned")));
        // Their messages stay.
        let history = bob.ok("message:history", json!({ "conversation_id": id })).await;
        assert_eq!(history["messages"][0]["body"], said["body"]);

        let (status, body) = as_app(&app, "DELETE", "/api/server/users/alice/ban", json!({})).await;
        assert_eq!((status, &body["data"]), (200, &json!({ "user_id": "alice", "ban": null })));
        assert_eq!(refused_reason(&app, "alice").await, None, "unbanned");
        // Unbanning who isn't banned changes nothing.
        let (status, _) = as_app(&app, "DELETE", "/api/server/users/nobody/ban", json!({})).await;
        assert_eq!(status, 200);
    }

    async fn a_ban_until_a_time_ends_by_itself(app: TestApp) {
        // Whole seconds: at least two ahead.
        let until = format_time(chrono_now() + 3);
        let (status, body) = as_app(&app, "POST", "/api/server/users/carol/ban", json!({ "until": until })).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(refused_reason(&app, "carol").await.as_deref(), Some("banned"));
        tokio::time::sleep(std::time::Duration::from_millis(3200)).await;
        assert_eq!(refused_reason(&app, "carol").await, None);

        // Bad bans change nothing.
        for (body, field) in [
            (json!({ "until": "tomorrow" }), "until"),
            (json!({ "until": format_time(chrono_now() - 10) }), "until"),
            (json!({ "reason": 5 }), "reason"),
        ] {
            let (status, reply) = as_app(&app, "POST", "/api/server/users/dave/ban", body).await;
            assert_eq!((status, reply["error"]["field"].as_str()), (400, Some(field)), "{reply}");
        }
        let (status, _) = as_app(&app, "POST", "/api/server/users/dave/ban", json!({ "reason": "x".repeat(501) })).await;
        assert_eq!(status, 413);
        // A misspelt field is refused, not read as a ban for good.
        let (status, reply) = as_app(&app, "POST", "/api/server/users/dave/ban", json!({ "untill": format_time(chrono_now() + 60) })).await;
        assert_eq!(status, 400, "{reply}");
        assert!(reply["error"]["message"].as_str().unwrap().contains("untill"), "{reply}");
        assert_eq!(refused_reason(&app, "dave").await, None);
        // A blank reason (an empty form field) is no reason.
        let (status, reply) = as_app(&app, "POST", "/api/server/users/erin/ban", json!({ "reason": " " })).await;
        assert_eq!((status, &reply["data"]["ban"]["reason"]), (200, &Value::Null), "{reply}");
        // A user's token can't ban.
        let (status, _) = app.http().post("/api/server/users/dave/ban", Some(&app.token("carol")), &json!({})).await;
        assert_eq!(status, 401);
    }

    async fn erasing_a_user_deletes_their_words_and_ends_their_memberships(app: TestApp) {
        let mut alice = app.connect("alice").await;
        let mut bob = app.connect("bob").await;
        let group_id = group(&alice, "g", &["bob"]).await;
        expect(&mut bob, "conversation:new").await;
        let direct = alice.ok("conversation:create", json!({ "kind": "direct", "user_id": "bob" })).await;
        let direct_id = direct["conversation"]["id"].as_str().unwrap().to_owned();
        expect(&mut bob, "conversation:new").await;
        let first = send(&alice, &group_id, "a1", "my address is …").await;
        send(&alice, &direct_id, "a2", "call me").await;
        let kept = send(&bob, &group_id, "b1", "ok").await;
        for _ in 0..2 {
            expect(&mut bob, "message:new").await;
        }

        let (status, body) = as_app(&app, "DELETE", "/api/server/users/alice", json!({})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"], json!({ "user_id": "alice", "messages_deleted": 2, "conversations_left": 2 }));
        assert_eq!(expect(&mut alice, "session:ended").await["reason"], "erased");
        expect_closed(&mut alice).await;
        // Bob sees her messages deleted, as for message:delete, and her leave.
        let mut deleted = Vec::new();
        for _ in 0..2 {
            let updated = expect(&mut bob, "message:updated").await["message"].clone();
            assert_eq!((&updated["body"], updated["deleted_at"].is_string()), (&Value::Null, true));
            deleted.push(updated["id"].clone());
        }
        assert!(deleted.contains(&first["id"]));
        let change = expect(&mut bob, "conversation:members").await;
        assert_eq!((&change["removed"], &change["by"]), (&json!(["alice"]), &Value::Null));
        // The group passed to Bob; his message stays.
        let list = bob.ok("conversation:list", json!({})).await;
        for c in list["conversations"].as_array().unwrap() {
            let ids: Vec<&str> = c["members"].as_array().unwrap().iter().map(|m| m["user_id"].as_str().unwrap()).collect();
            assert_eq!(ids, ["bob"], "{c}");
            if c["id"] == group_id.as_str() {
                assert_eq!(c["members"][0]["role"], "owner");
            }
        }
        let history = bob.ok("message:history", json!({ "conversation_id": group_id })).await;
        let bodies: Vec<&Value> = history["messages"].as_array().unwrap().iter().map(|m| &m["body"]).collect();
        assert_eq!(bodies, [&Value::Null, &kept["body"]]);
        // Her tokens are refused, and asking again changes nothing more.
        assert_eq!(refused_reason(&app, "alice").await.as_deref(), Some("banned"));
        let (status, body) = as_app(&app, "DELETE", "/api/server/users/alice", json!({})).await;
        assert_eq!((status, &body["data"]), (200, &json!({ "user_id": "alice", "messages_deleted": 0, "conversations_left": 0 })));
        expect_none(&mut bob, "message:updated").await;

        // Should her id come back (an unban), she is handed a new direct conversation with Bob,
        // never the old one she is no longer a member of (whose last message is Bob's).
        let (status, _) = as_app(&app, "DELETE", "/api/server/users/alice/ban", json!({})).await;
        assert_eq!(status, 200);
        let again = app.connect("alice").await;
        let reopened = again.ok("conversation:create", json!({ "kind": "direct", "user_id": "bob" })).await;
        let conversation = &reopened["conversation"];
        assert_ne!(conversation["id"].as_str(), Some(direct_id.as_str()));
        let mut members: Vec<&str> = conversation["members"].as_array().unwrap().iter().map(|m| m["user_id"].as_str().unwrap()).collect();
        members.sort();
        assert_eq!(members, ["alice", "bob"]);
        assert_eq!(conversation["last_message"], Value::Null);
    }
}

/// Unix seconds as RFC 3339.
fn format_time(secs: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs as u64);
    let dt: chrono::DateTime<chrono::Utc> = t.into();
    dt.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// In a cluster, the app calls one node and the user is on another: the ban reaches their
/// sockets there, and so does what the app posts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_reaches_sockets_on_other_nodes() {
    let Some(nodes) = crate::cluster::cluster(2, crate::cluster::REDIS, &[]).await else {
        return;
    };
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut alice = b.connect("alice").await;
    let (status, body) = a
        .http()
        .post(
            "/api/server/conversations",
            Some(SERVER_KEY),
            &json!({ "kind": "group", "title": "t", "owner_id": "alice", "member_ids": ["bob"] }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["data"]["conversation"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    expect(&mut alice, "conversation:new").await;
    let (status, _) = a
        .http()
        .post(
            &format!("/api/server/conversations/{id}/messages"),
            Some(SERVER_KEY),
            &json!({ "client_id": "s1", "body": "welcome" }),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(
        expect(&mut alice, "message:new").await["message"]["kind"],
        "system"
    );

    let (status, _) = a
        .http()
        .post("/api/server/users/alice/ban", Some(SERVER_KEY), &json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        expect(&mut alice, "session:ended").await["reason"],
        "banned"
    );
    expect_closed(&mut alice).await;
    assert_eq!(refused_reason(b, "alice").await.as_deref(), Some("banned"));
}
