//! Authorization, in one place: what a stranger to a conversation can't do or see, what a member
//! can't do to others, and that identity comes only from the token.

use serde_json::json;

use crate::helpers::*;

both_backends! {
    async fn a_non_member_can_do_nothing_and_see_nothing(app: TestApp) {
        let alice = app.connect("alice").await;
        let mut bob = app.connect("bob").await;
        let mut mallory = app.connect("mallory").await;
        let id = group(&alice, "private", &["bob"]).await;
        expect(&mut bob, "conversation:new").await;
        let m = send(&alice, &id, "k", "secret").await;
        expect(&mut bob, "message:new").await;

        let attempts = [
            ("message:send", json!({ "conversation_id": id, "client_id": "x", "body": "let me in" })),
            ("message:edit", json!({ "conversation_id": id, "message_id": m["id"], "body": "mine" })),
            ("message:delete", json!({ "conversation_id": id, "message_id": m["id"] })),
            ("message:history", json!({ "conversation_id": id })),
            ("conversation:read", json!({ "conversation_id": id, "seq": 1 })),
            ("typing:start", json!({ "conversation_id": id })),
            ("typing:stop", json!({ "conversation_id": id })),
            ("conversation:members:add", json!({ "conversation_id": id, "user_ids": ["mallory"] })),
            ("conversation:members:remove", json!({ "conversation_id": id, "user_ids": ["bob"] })),
            ("conversation:leave", json!({ "conversation_id": id })),
        ];
        for (event, payload) in attempts {
            let e = mallory.fails(event, payload).await;
            assert_eq!(e["code"], "not_found", "{event}: {e}");
        }
        // Sync leaves the conversation out rather than erroring (it can't be told apart from
        // one that doesn't exist).
        let data = mallory.ok("sync", json!({ "cursors": { id.clone(): 0 } })).await;
        assert_eq!(data["updates"], json!([]));
        // Presence of the members stays unknown.
        let p = mallory.ok("presence:get", json!({ "user_ids": ["alice", "bob"] })).await;
        for entry in p["presence"].as_array().unwrap() {
            assert_eq!(entry["online"], false);
            assert_eq!(entry["last_seen_at"], serde_json::Value::Null);
        }
        // Nothing of the conversation reaches the stranger.
        alice.ok("typing:start", json!({ "conversation_id": id })).await;
        send(&alice, &id, "k2", "still secret").await;
        bob.ok("conversation:read", json!({ "conversation_id": id, "seq": 2 })).await;
        for event in ["typing", "message:new", "receipt", "conversation:members"] {
            expect_none(&mut mallory, event).await;
        }
        // And nothing the stranger tried changed anything.
        let page = alice.ok("message:history", json!({ "conversation_id": id })).await;
        assert_eq!(page["messages"].as_array().unwrap().len(), 2);
        assert_eq!(page["messages"][0]["body"], "secret");
        let list = alice.ok("conversation:list", json!({})).await;
        assert_eq!(list["conversations"][0]["members"].as_array().unwrap().len(), 2);
        // Over HTTP too.
        let (status, _) = app.http().get(&format!("/api/conversations/{id}/messages"), Some(&app.token("mallory"))).await;
        assert_eq!(status, 404);
    }

    async fn identity_comes_from_the_token_never_the_payload(app: TestApp) {
        let alice = app.connect("alice").await;
        let mut bob = app.connect("bob").await;
        let id = group(&alice, "team", &["bob"]).await;
        expect(&mut bob, "conversation:new").await;
        let m = alice
            .ok("message:send", json!({ "conversation_id": id, "client_id": "k", "body": "hi", "sender_id": "bob", "user_id": "bob" }))
            .await;
        assert_eq!(m["message"]["sender_id"], "alice");
        assert_eq!(expect(&mut bob, "message:new").await["message"]["sender_id"], "alice");
        let (_, body) = app
            .http()
            .post(&format!("/api/conversations/{id}/messages"), Some(&app.token("bob")), &json!({ "client_id": "h", "body": "x", "sender_id": "alice" }))
            .await;
        assert_eq!(body["data"]["message"]["sender_id"], "bob");
        // A group created "on behalf of" someone else is still owned by its creator.
        let g = alice
            .ok("conversation:create", json!({ "kind": "group", "title": "t", "member_ids": ["bob"], "owner": "bob", "creator_id": "bob" }))
            .await;
        let owner = g["conversation"]["members"].as_array().unwrap().iter().find(|m| m["role"] == "owner").unwrap().clone();
        assert_eq!(owner["user_id"], "alice");
    }

    async fn members_cannot_act_for_each_other(app: TestApp) {
        let alice = app.connect("alice").await;
        let bob = app.connect("bob").await;
        let id = group(&alice, "team", &["bob", "carol"]).await;
        let m = send(&alice, &id, "k", "alice's words").await;
        let e = bob.fails("message:edit", json!({ "conversation_id": id, "message_id": m["id"], "body": "bob's words" })).await;
        assert_eq!(e["code"], "forbidden");
        let e = bob.fails("message:delete", json!({ "conversation_id": id, "message_id": m["id"] })).await;
        assert_eq!(e["code"], "forbidden");
        let e = bob.fails("conversation:members:remove", json!({ "conversation_id": id, "user_ids": ["carol"] })).await;
        assert_eq!(e["code"], "forbidden");
        let e = bob.fails("conversation:members:add", json!({ "conversation_id": id, "user_ids": ["mallory"] })).await;
        assert_eq!(e["code"], "forbidden");
        let page = alice.ok("message:history", json!({ "conversation_id": id })).await;
        assert_eq!(page["messages"][0]["body"], "alice's words");
    }
}

/// Nothing reaches a socket before its CONNECT is answered: not the events of conversations
/// the user is in (which start flowing to the user's registration while the handshake loads
/// their memberships), not answers to events sent before authenticating, and after a refusal
/// nothing at all.
mod before_authentication {
    use std::time::Duration;

    use futures::{SinkExt, StreamExt};
    use serde_json::json;
    use tokio_tungstenite::tungstenite::Message;

    use crate::helpers::*;

    type Ws = tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >;

    async fn open(app: &TestApp) -> Ws {
        let url = format!(
            "{}/socket.io/?EIO=4&transport=websocket",
            app.url.replacen("http", "ws", 1)
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.starts_with('0') => {}
            other => panic!("expected the open packet, got {other:?}"),
        }
        ws
    }

    /// The text frames that arrive within `wait`, pings answered and left out.
    async fn frames(ws: &mut Ws, until: impl Fn(&str) -> bool, wait: Duration) -> Vec<String> {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Some(Ok(message))) = tokio::time::timeout_at(deadline, ws.next()).await {
            if let Message::Text(text) = message {
                if text.as_str() == "2" {
                    ws.send(Message::text("3")).await.unwrap();
                    continue;
                }
                seen.push(text.to_string());
                if until(text.as_str()) {
                    break;
                }
            }
        }
        seen
    }

    both_backends! {
        async fn nothing_is_emitted_before_the_connect_is_answered(app: TestApp) {
            let alice = app.connect("alice").await;
            let id = group(&alice, "busy", &["bob"]).await;
            // Alice keeps the conversation busy while bob's sockets connect.
            let chatter = {
                let alice = app.connect("alice").await;
                let id = id.clone();
                tokio::spawn(async move {
                    for i in 0.. {
                        let payload = json!({ "conversation_id": id, "client_id": format!("c{i}"), "body": "busy" });
                        let _ = alice.emit_with_ack("message:send", payload).await;
                        let _ = alice.emit_with_ack("typing:start", json!({ "conversation_id": id })).await;
                    }
                })
            };
            for round in 0..20 {
                let mut ws = open(&app).await;
                // An event before authenticating is dropped, not answered.
                let early = json!({ "conversation_id": id, "client_id": format!("early{round}"), "body": "sneaky" });
                ws.send(Message::text(format!("421[\"message:send\",{early}]"))).await.unwrap();
                let token = json!({ "token": app.token("bob") });
                ws.send(Message::text(format!("40{token}"))).await.unwrap();
                let seen = frames(&mut ws, |t| t.starts_with("40") || t.starts_with("44"), EVENT_WAIT).await;
                let answer = seen.last().unwrap_or_else(|| panic!("no answer to CONNECT"));
                assert!(answer.starts_with("40{"), "round {round}: {seen:?}");
                assert_eq!(seen.len(), 1, "round {round}: frames before the connect answer: {seen:?}");
                // After it, the conversation's events flow, and the early send never got an ack.
                let after = frames(&mut ws, |t| t.starts_with("42[\"message:new\""), EVENT_WAIT).await;
                assert!(after.iter().any(|t| t.starts_with("42[\"message:new\"")), "{after:?}");
                assert!(!after.iter().any(|t| t.starts_with("431")), "the early event was answered: {after:?}");
            }
            // Refused: the 44, then nothing while the conversation stays busy.
            let mut ws = open(&app).await;
            ws.send(Message::text(r#"40{"token":"not-a-token"}"#)).await.unwrap();
            let seen = frames(&mut ws, |_| false, Duration::from_millis(1500)).await;
            assert_eq!(seen.len(), 1, "{seen:?}");
            assert!(seen[0].starts_with("44{"), "{seen:?}");
            chatter.abort();
            let page = alice.ok("message:history", json!({ "conversation_id": id, "limit": 200 })).await;
            assert!(!page["messages"].as_array().unwrap().iter().any(|m| m["body"] == "sneaky"));
        }
    }
}
