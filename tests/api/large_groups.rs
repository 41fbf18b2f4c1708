//! Large groups (issue 23): member lists are paged, so building a group of n costs O(n) in
//! all, not n². A conversation object carries its first 100 members and `member_count`; joins
//! in a large group are not pushed to every member, nor are presence, typing and others'
//! receipts; `conversation:members:list` pages through the rest.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use confab_sio_client::Client;
use serde_json::{Value, json};

use crate::helpers::*;

/// The most members a conversation object carries (`domain::MEMBERS_PAGE`).
const PAGE: usize = 100;

fn made_up(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("u{i:05}")).collect()
}

/// A group the host app creates with `owner` and `members`, over the server API.
async fn app_group(app: &TestApp, owner: &str, members: &[String]) -> String {
    let (status, body) = app
        .http()
        .post(
            "/api/server/conversations",
            Some(SERVER_KEY),
            &json!({ "kind": "group", "title": "big", "owner_id": owner, "member_ids": members }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["data"]["conversation"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn app_add(app: &TestApp, id: &str, users: &[String]) -> Value {
    let (status, body) = app
        .http()
        .post(
            &format!("/api/server/conversations/{id}/members"),
            Some(SERVER_KEY),
            &json!({ "user_ids": users }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["data"]["conversation"].clone()
}

async fn app_remove(app: &TestApp, id: &str, user: &str) -> Value {
    let (status, body) = app
        .http()
        .delete(
            &format!("/api/server/conversations/{id}/members/{user}"),
            Some(SERVER_KEY),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["data"]["conversation"].clone()
}

/// Every event a client received until it has been quiet for a moment.
async fn drain(client: &mut Client) -> Vec<(String, Value)> {
    let mut events = Vec::new();
    while let Some(incoming) = client.next_event_timeout(Duration::from_millis(400)).await {
        if let confab_sio_client::Incoming::Event(e) = incoming {
            events.push((e.name.clone(), e.data().clone()));
        }
    }
    events
}

/// Member list entries in membership events (a `conversation:new`'s members, a
/// `conversation:members`' changed and removed), and their bytes.
fn membership_cost(events: &[(String, Value)]) -> (usize, usize) {
    let mut entries = 0;
    let mut bytes = 0;
    for (name, data) in events {
        let n = match name.as_str() {
            "conversation:new" => data["conversation"]["members"].as_array().unwrap().len(),
            "conversation:members" => {
                data["changed"].as_array().unwrap().len()
                    + data["removed"].as_array().unwrap().len()
            }
            _ => continue,
        };
        entries += n;
        bytes += data.to_string().len();
    }
    (entries, bytes)
}

/// Walks every page of `id`'s member list as `viewer`, with `between` run after each page.
async fn walk<F, Fut>(viewer: &Client, id: &str, limit: usize, mut between: F) -> Vec<Value>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    for page in 0.. {
        let mut request = json!({ "conversation_id": id, "limit": limit });
        if let Some(a) = &after {
            request["after"] = json!(a);
        }
        let data = viewer.ok("conversation:members:list", request).await;
        let members = data["members"].as_array().unwrap();
        assert!(members.len() <= limit, "{data}");
        all.extend(members.iter().cloned());
        match data["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
        between(page).await;
    }
    all
}

fn ids(members: &[Value]) -> Vec<String> {
    members
        .iter()
        .map(|m| m["user_id"].as_str().unwrap().to_owned())
        .collect()
}

both_backends! {
    async fn building_a_group_of_thousands_costs_each_member_a_bounded_share(app: TestApp) {
        // A group of 3,000 built by the host app in requests of 1,000 (its limit per request),
        // watched by 31 members connected from the start: the owner, some of the first
        // members (who see the whole build-up) and some added in each later request.
        const N: usize = 3000;
        let everyone = made_up(1..N);
        let watched: Vec<String> = (0..30).map(|i| everyone[i * 97].clone()).collect();
        let mut watchers = Vec::new();
        for user in std::iter::once("u00000".to_owned()).chain(watched.iter().cloned()) {
            watchers.push((user.clone(), app.connect(&user).await));
        }
        let id = app_group(&app, "u00000", &everyone[..999]).await;
        for chunk in everyone[999..].chunks(1000) {
            let after = app_add(&app, &id, chunk).await;
            // The ack carries the first page and the count, not the whole list.
            assert_eq!(after["members"].as_array().unwrap().len(), PAGE);
        }
        let mut total_entries = 0;
        let mut total_bytes = 0;
        for (user, client) in &mut watchers {
            let events = drain(client).await;
            let (entries, bytes) = membership_cost(&events);
            // Each member hears of the group once (its first page: at most 100 entries), and
            // of no later join: the group was large from the start. Under the old protocol
            // every `conversation:new` carried the whole list and every add a delta to each
            // member, so the first members received n - 1 = 2,999 entries (about 300 KB) and
            // the total for the group was n² / 2 (4.5 million entries, 450 MB).
            assert!(entries <= PAGE, "{user} received {entries} member entries");
            assert!(bytes <= 16 * 1024, "{user} received {bytes} bytes of membership events");
            let new: Vec<&Value> = events.iter().filter(|(n, _)| n == "conversation:new").map(|(_, d)| d).collect();
            assert_eq!(new.len(), 1, "{user}: {events:?}");
            assert!(new[0]["conversation"]["member_count"].as_i64().unwrap() >= 1000);
            total_entries += entries;
            total_bytes += bytes;
        }
        // Linear: a bounded share per member (at most a page each), so the whole group's
        // build-up costs at most PAGE · n entries.
        assert!(total_entries <= PAGE * watchers.len(), "{total_entries}");
        eprintln!("{} watchers of a group of {N}: {total_entries} member entries, {total_bytes} bytes", watchers.len());

        // Everyone sees the whole count, and a list carries the first page only.
        let (owner, watcher) = (&watchers[0].1, &watchers[1].1);
        let list = watcher.ok("conversation:list", json!({})).await;
        let c = &list["conversations"][0];
        assert_eq!(c["member_count"], N);
        assert_eq!(c["members"].as_array().unwrap().len(), PAGE);
        assert_eq!(c["members"][0]["user_id"], "u00000");
        assert_eq!(c["members"][0]["role"], "owner");
        let all = walk(owner, &id, 1000, |_| async {}).await;
        assert_eq!(all.len(), N);
        assert_eq!(&ids(&all)[..PAGE], &ids(c["members"].as_array().unwrap())[..]);
    }

    async fn a_small_group_still_gets_whole_lists_and_deltas(app: TestApp) {
        // Up to 100 members nothing changes for clients: whole lists, and deltas to all.
        let everyone = made_up(1..99);
        let mut early = app.connect("u00001").await;
        let id = app_group(&app, "u00000", &everyone).await;
        let new = expect(&mut early, "conversation:new").await;
        assert_eq!(new["conversation"]["members"].as_array().unwrap().len(), 99);
        assert_eq!(new["conversation"]["member_count"], 99);
        // 99 → 100: still small, the delta reaches the members.
        app_add(&app, &id, &made_up(99..100)).await;
        let delta = expect(&mut early, "conversation:members").await;
        assert_eq!(delta["changed"][0]["user_id"], "u00099");
        assert_eq!(delta["member_count"], 100);
        // 100 → 102: small before, so told (their list is whole and can follow).
        app_add(&app, &id, &made_up(100..102)).await;
        let delta = expect(&mut early, "conversation:members").await;
        assert_eq!(delta["changed"].as_array().unwrap().len(), 2);
        assert_eq!(delta["member_count"], 102);
        // 102 → 103: large before and after, so not pushed.
        app_add(&app, &id, &made_up(102..103)).await;
        expect_none(&mut early, "conversation:members").await;
        // Back to 100 (small after): told, with the count to reload by.
        for gone in ["u00100", "u00101"] {
            app_remove(&app, &id, gone).await;
        }
        app_remove(&app, &id, "u00102").await;
        let mut last = Value::Null;
        while let Some(incoming) = early.next_event_timeout(Duration::from_millis(400)).await {
            if let confab_sio_client::Incoming::Event(e) = incoming {
                if e.name == "conversation:members" {
                    last = e.data().clone();
                }
            }
        }
        assert_eq!(last["member_count"], 100, "{last}");
        assert_eq!(last["removed"], json!(["u00102"]));
    }

    async fn paging_returns_every_member_who_stayed_exactly_once_in_order(app: TestApp) {
        let everyone = made_up(1..450);
        let id = app_group(&app, "u00000", &everyone[..200]).await;
        // Joined later, so they come later in member order.
        app_add(&app, &id, &everyone[200..]).await;
        let viewer = app.connect("u00000").await;
        let before = walk(&viewer, &id, 1000, |_| async {}).await;
        assert_eq!(before.len(), 450);
        let order = ids(&before);
        // Owner first, then by when they joined; no one twice.
        assert_eq!(order[0], "u00000");
        assert_eq!(order.iter().collect::<HashSet<_>>().len(), 450);
        let position: HashMap<&String, usize> = order.iter().enumerate().map(|(i, u)| (u, i)).collect();
        assert!(position[&"u00199".to_owned()] < position[&"u00200".to_owned()]);

        // Page through in 23s while members leave (some already seen, some not yet) and others
        // join. Nobody who stayed throughout is skipped or seen twice.
        let doomed: Vec<String> = (0..40).map(|i| everyone[i * 11 + 3].clone()).collect();
        let stayed: HashSet<&String> = order.iter().filter(|u| !doomed.contains(u)).collect();
        let seen = walk(&viewer, &id, 23, |page| {
            let app = &app;
            let id = &id;
            let doomed = &doomed;
            async move {
                if page < 10 {
                    for gone in &doomed[page * 4..page * 4 + 4] {
                        app_remove(app, id, gone).await;
                    }
                    app_add(app, id, &[format!("late{page}")]).await;
                }
            }
        })
        .await;
        let seen_ids = ids(&seen);
        let mut count: HashMap<&String, usize> = HashMap::new();
        for u in &seen_ids {
            *count.entry(u).or_default() += 1;
        }
        for u in &stayed {
            assert_eq!(count.get(u), Some(&1), "{u} was seen {:?} times", count.get(u));
        }
        assert!(count.values().all(|n| *n == 1), "a member was seen twice");
        // In order: those who stayed appear as they were ordered before, and the late joiners
        // (all of them: they join behind everyone) last.
        let kept: Vec<&String> = seen_ids.iter().filter(|u| stayed.contains(u)).collect();
        let expected: Vec<&String> = order.iter().filter(|u| stayed.contains(u)).collect();
        assert_eq!(kept, expected);
        let late: Vec<&String> = seen_ids.iter().filter(|u| u.starts_with("late")).collect();
        assert_eq!(late.len(), 10);
        assert!(seen_ids.ends_with(&late.iter().map(|u| (*u).clone()).collect::<Vec<_>>()));
        // The count follows: 450 - 40 + 10.
        let last = viewer.ok("conversation:members:list", json!({ "conversation_id": id, "limit": 1 })).await;
        assert_eq!(last["member_count"], 420);

        // Over HTTP, the same pages.
        let token = app.token("u00000");
        let (status, body) = app.http().get(&format!("/api/conversations/{id}/members?limit=5"), Some(&token)).await;
        assert_eq!(status, 200, "{body}");
        let first = body["data"]["members"].as_array().unwrap();
        assert_eq!(ids(first), &ids(&walk(&viewer, &id, 1000, |_| async {}).await)[..5]);
        let next = body["data"]["next"].as_str().unwrap();
        let (status, body) = app.http().get(&format!("/api/conversations/{id}/members?limit=5&after={next}"), Some(&token)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["members"].as_array().unwrap().len(), 5);
        assert_ne!(body["data"]["members"][0]["user_id"], first[0]["user_id"]);
    }

    async fn member_lists_are_for_members_and_refuse_bad_cursors_and_limits(app: TestApp) {
        let alice = app.connect("alice").await;
        let mallory = app.connect("mallory").await;
        let id = group(&alice, "t", &["bob", "carol"]).await;
        let data = alice.ok("conversation:members:list", json!({ "conversation_id": id })).await;
        assert_eq!(ids(data["members"].as_array().unwrap()), ["alice", "bob", "carol"]);
        assert_eq!(data["member_count"], 3);
        assert_eq!(data["next"], Value::Null);
        // A page of one, then the next: each `next` leads on.
        let one = alice.ok("conversation:members:list", json!({ "conversation_id": id, "limit": 1 })).await;
        assert_eq!(ids(one["members"].as_array().unwrap()), ["alice"]);
        let two = alice.ok("conversation:members:list", json!({ "conversation_id": id, "limit": 1, "after": one["next"] })).await;
        assert_eq!(ids(two["members"].as_array().unwrap()), ["bob"]);
        // Not a member, or no such conversation: the same not_found.
        let e = mallory.fails("conversation:members:list", json!({ "conversation_id": id })).await;
        assert_eq!(e["code"], "not_found");
        let e = mallory.fails("conversation:members:list", json!({ "conversation_id": "01930000-0000-7000-8000-000000000000" })).await;
        assert_eq!(e["code"], "not_found");
        // Bad cursors and limits: a clear error naming the field.
        for bad in [json!("nonsense"), json!(""), json!("31323334"), json!(42), json!("392e312e626f62")] {
            let e = alice.fails("conversation:members:list", json!({ "conversation_id": id, "after": bad })).await;
            assert_eq!(e["code"], "invalid_payload", "{bad}: {e}");
            assert_eq!(e["field"], "after", "{bad}: {e}");
        }
        for bad in [json!(0), json!(-1), json!("ten"), json!(2.5)] {
            let e = alice.fails("conversation:members:list", json!({ "conversation_id": id, "limit": bad })).await;
            assert_eq!(e["code"], "invalid_payload", "{bad}: {e}");
            assert_eq!(e["field"], "limit", "{bad}: {e}");
        }
        let e = alice.fails("conversation:members:list", json!({ "conversation_id": "x" })).await;
        assert_eq!(e["field"], "conversation_id");
        // A large limit is served at the maximum, as history's is.
        alice.ok("conversation:members:list", json!({ "conversation_id": id, "limit": 100000 })).await;
        // Over HTTP: 404 for a stranger, 400 for a bad cursor, 401 without a token.
        let http = app.http();
        let path = format!("/api/conversations/{id}/members");
        let (status, _) = http.get(&path, Some(&app.token("mallory"))).await;
        assert_eq!(status, 404);
        let (status, body) = http.get(&format!("{path}?after=zzz"), Some(&app.token("alice"))).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["field"], "after");
        let (status, body) = http.get(&format!("{path}?limit=0"), Some(&app.token("alice"))).await;
        assert_eq!(status, 400, "{body}");
        let (status, _) = http.get(&path, None).await;
        assert_eq!(status, 401);
    }

    async fn a_large_group_keeps_presence_typing_and_receipts_to_who_needs_them(app: TestApp) {
        let everyone = made_up(1..150);
        let id = app_group(&app, "u00000", &everyone).await;
        // u00001 and u00002 also share a small group, where presence still flows.
        let small = app_group(&app, "u00001", &["u00002".to_owned()]).await;
        let mut three = app.connect("u00003").await;
        let mut one = app.connect("u00001").await;
        let mut one_tab = app.connect("u00001").await;
        let two = app.connect("u00002").await;
        // u00003 shares only the large group with the others: no presence of their arrival.
        expect_none(&mut three, "presence").await;
        // u00001 heard of u00002 through the small group.
        let p = expect(&mut one, "presence").await;
        assert_eq!(p["user_id"], "u00002");
        // Presence on demand still answers for a large group's members.
        let asked = three.ok("presence:get", json!({ "user_ids": ["u00002"] })).await;
        assert_eq!(asked["presence"][0]["online"], true);

        // Typing: answered, told nobody. In the small group it still is.
        two.ok("typing:start", json!({ "conversation_id": id })).await;
        expect_none(&mut three, "typing").await;
        two.ok("typing:start", json!({ "conversation_id": small })).await;
        assert_eq!(expect(&mut one, "typing").await["conversation_id"], small.as_str());

        // Receipts: only the reader's other sockets.
        send(&two, &id, "m1", "hello").await;
        let _ = expect(&mut one, "message:new").await;
        let _ = expect(&mut one_tab, "message:new").await;
        let _ = expect(&mut three, "message:new").await;
        one.ok("conversation:read", json!({ "conversation_id": id, "seq": 1 })).await;
        assert_eq!(expect(&mut one_tab, "receipt").await["user_id"], "u00001");
        expect_none(&mut three, "receipt").await;
        // The read mark is in the member list.
        let page = three.ok("conversation:members:list", json!({ "conversation_id": id, "limit": 3 })).await;
        assert_eq!(page["members"][1]["user_id"], "u00001");
        assert_eq!(page["members"][1]["last_read_seq"], 1);

        // A join is not pushed to everyone; an ownership hand-over is, also to members past
        // the first page (whom the change itself never loaded).
        let mut far = app.connect("u00149").await;
        app_add(&app, &id, &["newcomer".to_owned()]).await;
        expect_none(&mut three, "conversation:members").await;
        app_remove(&app, &id, "u00000").await;
        let far_delta = expect(&mut far, "conversation:members").await;
        assert_eq!(far_delta["changed"][0]["role"], "owner");
        let delta = expect(&mut three, "conversation:members").await;
        assert_eq!(delta["removed"], json!(["u00000"]));
        assert_eq!(delta["changed"][0]["user_id"], "u00001");
        assert_eq!(delta["changed"][0]["role"], "owner");
        assert_eq!(delta["member_count"], 150);
    }
}
