//! Seq numbers: in order, without gaps or duplicates, however the sends arrive.

use std::collections::BTreeSet;

use futures::future::join_all;
use serde_json::json;

use crate::helpers::*;

both_backends! {
    async fn one_socket_s_sends_are_stored_in_the_order_sent(app: TestApp) {
        let alice = app.connect("alice").await;
        let mut bob = app.connect("bob").await;
        let id = group(&alice, "team", &["bob"]).await;
        // Fire 200 sends back to back without waiting for acks.
        let acks = join_all((0..200).map(|i| {
            alice.emit_with_ack(
                "message:send",
                json!({ "conversation_id": id, "client_id": format!("c{i}"), "body": format!("{i}") }),
            )
        }))
        .await;
        for (i, ack) in acks.into_iter().enumerate() {
            let ack = ack.expect("ack");
            assert_eq!(ack["data"]["message"]["seq"], i as i64 + 1, "send {i}: {ack}");
        }
        for i in 0..200 {
            let m = expect(&mut bob, "message:new").await;
            assert_eq!(m["message"]["seq"], i + 1);
            assert_eq!(m["message"]["body"], i.to_string());
        }
    }

    async fn concurrent_senders_get_gap_free_seqs_delivered_in_order(app: TestApp) {
        const SENDERS: usize = 4;
        const EACH: usize = 50;
        let names: Vec<String> = (0..SENDERS).map(|i| format!("sender{i}")).collect();
        let senders = join_all(names.iter().map(|n| app.connect(n))).await;
        let mut observer = app.connect("observer").await;
        let mut members: Vec<&str> = names.iter().map(String::as_str).collect();
        members.push("observer");
        let id = group(&senders[0], "busy", &members).await;
        expect(&mut observer, "conversation:new").await;

        let all = join_all(senders.iter().enumerate().flat_map(|(s, client)| {
            let id = id.clone();
            (0..EACH).map(move |i| {
                client.emit_with_ack(
                    "message:send",
                    json!({ "conversation_id": id, "client_id": format!("{s}-{i}"), "body": "x" }),
                )
            })
        }))
        .await;
        let seqs: BTreeSet<i64> = all
            .iter()
            .map(|a| a.as_ref().unwrap()["data"]["message"]["seq"].as_i64().unwrap())
            .collect();
        let total = (SENDERS * EACH) as i64;
        assert_eq!(seqs, (1..=total).collect::<BTreeSet<_>>(), "seqs are 1..={total} exactly once");

        for expected in 1..=total {
            let m = expect(&mut observer, "message:new").await;
            assert_eq!(m["message"]["seq"], expected, "delivered in seq order");
        }
        expect_none(&mut observer, "message:new").await;
    }
}
