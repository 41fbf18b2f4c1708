//! A protocol fuzzer: random and mutated Engine.IO/Socket.IO frames from many connections, for a
//! bounded time (`CONFAB_FUZZ_SECS`, default 5), while a well-behaved pair of users chats. The
//! server must stay up, keep its memory bounded, and serve the pair without a single error.
//!
//! The seed is printed; `CONFAB_FUZZ_SEED=<n>` replays a run.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;
use crate::nodes::NodeProcess;

/// Frames that are valid, or nearly: the mutator starts from these.
fn seeds(token: &str) -> Vec<String> {
    let id = uuid::Uuid::now_v7();
    vec![
        format!("40{{\"token\":\"{token}\"}}"),
        "40".into(),
        "40/admin,{}".into(),
        format!(
            "42[\"message:send\",{{\"conversation_id\":\"{id}\",\"client_id\":\"c\",\"body\":\"hi\"}}]"
        ),
        "421[\"conversation:list\",{}]".into(),
        "42[\"sync\",{\"cursors\":{}}]".into(),
        "43999[\"an ack for nothing\"]".into(),
        "451-[\"message:send\",{\"_placeholder\":true,\"num\":0}]".into(),
        "41".into(),
        "2".into(),
        "3".into(),
        "5".into(),
        "6".into(),
        "1".into(),
        "4".into(),
        "44{\"message\":\"from the client?\"}".into(),
        "42[\"message:send\",".into(),
        "42[]".into(),
        "42[1,2,3]".into(),
        "42{\"not\":\"an array\"}".into(),
    ]
}

fn mutate(rng: &mut StdRng, frame: &str) -> Message {
    let mut bytes = frame.as_bytes().to_vec();
    match rng.random_range(0..9) {
        0 => {
            // Flip some bytes.
            for _ in 0..rng.random_range(1..6) {
                if !bytes.is_empty() {
                    let i = rng.random_range(0..bytes.len());
                    bytes[i] = rng.random();
                }
            }
        }
        1 => bytes.truncate(rng.random_range(0..=bytes.len())),
        2 => {
            // Deep nesting.
            let depth = rng.random_range(50..5000);
            let nested = "[".repeat(depth) + &"]".repeat(depth);
            bytes = format!("42[\"message:send\",{nested}]").into_bytes();
        }
        3 => {
            // A giant string, sometimes over the 64 KiB limit.
            let len = rng.random_range(1_000..100_000);
            bytes =
                format!("42[\"message:send\",{{\"body\":\"{}\"}}]", "x".repeat(len)).into_bytes();
        }
        4 => {
            return Message::Binary(
                (0..rng.random_range(0..200))
                    .map(|_| rng.random())
                    .collect::<Vec<u8>>()
                    .into(),
            );
        }
        5 => {
            // Invalid UTF-8 in a text-looking payload, sent as binary (text frames must be UTF-8).
            bytes.extend_from_slice(&[0xff, 0xfe, 0xc3]);
            return Message::Binary(bytes.into());
        }
        6 => {
            let name: String = (0..rng.random_range(0..300))
                .map(|_| rng.random_range(' '..'~'))
                .collect();
            bytes = format!("42[{},{{}}]", json!(name)).into_bytes();
        }
        7 => bytes = format!("42{}[\"message:send\",{{}}]", rng.random::<u64>()).into_bytes(),
        _ => {}
    }
    Message::Text(String::from_utf8_lossy(&bytes).into_owned().into())
}

/// One hostile connection: a handful of frames, then gone (or kept, to pile up).
/// One hostile WebSocket; `false` when it couldn't even connect (then it attacked nothing).
async fn attack(url: &str, rng: &mut StdRng, seeds: &[String]) -> bool {
    let ws_url = format!(
        "{}/socket.io/?EIO=4&transport=websocket",
        url.replace("http://", "ws://")
    );
    let Ok(Ok((mut ws, _))) = tokio::time::timeout(
        Duration::from_secs(2),
        tokio_tungstenite::connect_async(&ws_url),
    )
    .await
    else {
        return false;
    };
    for _ in 0..rng.random_range(1..30) {
        let frame = &seeds[rng.random_range(0..seeds.len())];
        let message = if rng.random_bool(0.3) {
            Message::Text(frame.clone().into())
        } else {
            mutate(rng, frame)
        };
        if ws.send(message).await.is_err() {
            // The server closed it: a malformed frame ends its connection, as it should.
            return true;
        }
        // Drain whatever the server says, without waiting for it.
        while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_millis(1), ws.next()).await
        {
        }
    }
    if rng.random_bool(0.5) {
        let _ = ws.close(None).await;
    }
    true
}

/// Garbage over HTTP long-polling.
async fn attack_polling(http: &reqwest::Client, url: &str, rng: &mut StdRng) {
    let body: Vec<u8> = (0..rng.random_range(0..2000))
        .map(|_| rng.random())
        .collect();
    let sid = if rng.random_bool(0.5) {
        "nonsense".to_owned()
    } else {
        String::new()
    };
    let _ = http
        .post(format!(
            "{url}/socket.io/?EIO=4&transport=polling&sid={sid}"
        ))
        .body(body)
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    let _ = http
        .get(format!(
            "{url}/socket.io/?EIO={}&transport={}",
            rng.random::<u8>(),
            rng.random::<u16>()
        ))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_frames_never_hurt_the_server_or_a_user_chatting_meanwhile() {
    let secs: u64 = std::env::var("CONFAB_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let seed: u64 = std::env::var("CONFAB_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("fuzz seed {seed} (CONFAB_FUZZ_SEED={seed} replays this run), {secs} s");

    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("fuzz.db").display());
    let node = NodeProcess::start(&[
        ("CONFAB_DATABASE_URL", database.as_str()),
        ("CONFAB_JWT_SECRET", SECRET),
        ("CONFAB_DATA_DIR", dir.path().to_str().unwrap()),
        ("CONFAB_RATE_CONNECT_PER_IP", "100000/100000"),
        // The fuzzers open sessions as fast as they can and mostly never connect: the per-address
        // limits on sessions would refuse most of them (tests/api/hostile.rs attacks those limits).
        ("CONFAB_RATE_SESSION_PER_IP", "100000/100000"),
        ("CONFAB_MAX_UNAUTHENTICATED_PER_IP", "100000"),
    ])
    .await;
    let url = node.url.clone();
    let pid = node.pid();
    let token = |user: &str| sign(json!({ "sub": user, "exp": chrono_now() + 3600 }));
    let connect = |user: &str| {
        let auth = json!({ "token": token(user) });
        let url = url.clone();
        async move {
            confab_sio_client::connect(confab_sio_client::ConnectOptions::new(url).auth(auth))
                .await
                .expect("a well-behaved user connects")
        }
    };
    let alice = connect("alice").await;
    let mut bob = connect("bob").await;
    let id = group(&alice, "calm", &["bob"]).await;
    expect(&mut bob, "conversation:new").await;
    let mallory_token = token("mallory");
    let seeds = seeds(&mallory_token);
    // Warm up so the baseline includes steady-state allocations.
    send(&alice, &id, "warmup", "warming up").await;
    expect(&mut bob, "message:new").await;
    let baseline = crate::nodes::rss_kib(pid);

    let deadline = Instant::now() + Duration::from_secs(secs);
    let attackers = (0..6u64).map(|i| {
        let url = url.clone();
        let seeds = seeds.clone();
        tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed.wrapping_add(i));
            let http = reqwest::Client::new();
            let (mut attacks, mut unconnected) = (0u64, 0u64);
            while Instant::now() < deadline {
                if rng.random_bool(0.15) {
                    attack_polling(&http, &url, &mut rng).await;
                } else if !attack(&url, &mut rng, &seeds).await {
                    unconnected += 1;
                }
                attacks += 1;
            }
            (attacks, unconnected)
        })
    });
    let calm = async {
        let mut sent = 0;
        while Instant::now() < deadline {
            let m = send(&alice, &id, &format!("calm{sent}"), "are we fine?").await;
            let got = expect(&mut bob, "message:new").await;
            assert_eq!(got["message"], m, "bob receives every message, in order");
            sent += 1;
            // A brisk human pace, inside the default send rate (20/s).
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        sent
    };
    let (attacks, sent) = tokio::join!(futures::future::join_all(attackers), calm);
    let (attacks, unconnected) = attacks
        .into_iter()
        .map(|a| a.unwrap())
        .fold((0, 0), |(a, u), (x, y)| (a + x, u + y));
    // An attack that never reached the server proves nothing: most must get through.
    assert!(
        unconnected * 10 <= attacks,
        "{unconnected} of {attacks} attacks could not even connect"
    );
    let after = crate::nodes::rss_kib(pid);
    eprintln!(
        "{attacks} hostile connections; {sent} calm messages; RSS {baseline} KiB → {after} KiB"
    );

    assert!(
        sent >= 5 * secs as usize,
        "the calm pair kept chatting: {sent}"
    );
    let (status, _) = Http {
        base: url.clone(),
        client: reqwest::Client::new(),
    }
    .get("/healthz", None)
    .await;
    assert_eq!(status, 200, "the server is up");
    assert!(alice.is_connected() && bob.is_connected());
    // Bounded: hostile connections come and go; what they leave behind must not pile up.
    assert!(
        after < baseline + 64 * 1024,
        "RSS grew from {baseline} KiB to {after} KiB over {attacks} hostile connections"
    );
}
