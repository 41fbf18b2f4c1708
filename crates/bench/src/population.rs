//! The simulated users: connecting them (paced, with bounded concurrency, spread over the
//! servers and source addresses), putting them in groups, and closing them at the end.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::capacity::SourceAddrs;
use crate::client::{self, Conversation, Handle, Shared, Target};
use crate::schedule::Schedule;
use crate::stats::{self, Latency};
use crate::tokens::Minter;

/// Most members `conversation:create` takes (the creator included), as the protocol says.
pub const CREATE_MAX_MEMBERS: usize = 1000;
/// Most ids one `conversation:members:add` takes.
pub const ADD_CHUNK: usize = 1000;
/// How long setup requests (creating groups, adding members) may take.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// How to connect the users.
pub struct ConnectPlan {
    pub targets: Vec<Arc<Target>>,
    pub sources: SourceAddrs,
    /// User `i` is `"{prefix}-{i}"`.
    pub user_prefix: String,
    pub users: usize,
    /// Connects in flight at once.
    pub concurrency: usize,
    /// Connects started per second; 0 for as fast as the concurrency allows.
    pub rate: f64,
    pub timeout: Duration,
    pub minter: Minter,
}

impl ConnectPlan {
    pub fn user_id(&self, i: usize) -> String {
        format!("{}-{i}", self.user_prefix)
    }
}

/// A connected user.
pub struct User {
    pub id: String,
    pub handle: Handle,
}

/// How connecting went.
#[derive(Debug, Clone)]
pub struct ConnectReport {
    pub attempted: usize,
    pub connected: usize,
    /// Failed connects by reason.
    pub failures: BTreeMap<String, u64>,
    /// From the first connect's start to the last one's end.
    pub elapsed: Duration,
    /// Time from starting a connect (TCP) to the server's CONNECT answer.
    pub latency: Latency,
}

impl ConnectReport {
    /// Successful connects per second over the whole connect phase.
    pub fn per_sec(&self) -> f64 {
        if self.elapsed.is_zero() {
            return 0.0;
        }
        (self.connected as f64 / self.elapsed.as_secs_f64() * 10.0).round() / 10.0
    }

    pub fn failed(&self) -> usize {
        self.attempted - self.connected
    }
}

/// The users, connected; `None` where connecting failed.
pub struct Population {
    pub users: Arc<Vec<Option<User>>>,
    pub report: ConnectReport,
    /// The connection tasks, to wait for at the end.
    tasks: JoinSet<()>,
}

/// Connects `plan.users` users: user `i` goes to target `i % targets` from source address
/// `i % sources`. Progress goes to stderr every few seconds.
pub async fn connect(plan: &ConnectPlan, shared: &Arc<Shared>) -> anyhow::Result<Population> {
    let semaphore = Arc::new(Semaphore::new(plan.concurrency.max(1)));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut tasks = JoinSet::new();
    let pacing = (plan.rate > 0.0).then(|| {
        Schedule::new(
            plan.rate,
            Duration::from_secs_f64(plan.users as f64 / plan.rate),
        )
    });
    let start = Instant::now();

    let mut spawned = 0;
    let mut tally = Tally {
        users: (0..plan.users).map(|_| None).collect(),
        failures: BTreeMap::new(),
        latency: stats::latency_histogram(),
        received: 0,
        last_done: start,
    };
    let mut last_progress = start;
    while tally.received < plan.users {
        // Start every connect that is due (all at once when unpaced; the semaphore bounds
        // how many are in flight).
        let due = match pacing {
            Some(s) => (s.due_by(start.elapsed()) as usize).min(plan.users),
            None => plan.users,
        };
        while spawned < due {
            let i = spawned;
            spawned += 1;
            let token = plan.minter.mint(&plan.user_id(i))?;
            let target = plan.targets[i % plan.targets.len()].clone();
            let local = plan.sources.for_index(i);
            let semaphore = semaphore.clone();
            let shared = shared.clone();
            let tx = tx.clone();
            let timeout = plan.timeout;
            tasks.spawn(async move {
                let Ok(permit) = semaphore.acquire_owned().await else {
                    return;
                };
                let began = Instant::now();
                // Boxed so the handshake's state doesn't stay part of the long-lived task.
                let result = Box::pin(client::connect(&target, local, &token, timeout)).await;
                drop(permit);
                drop(token);
                match result {
                    Ok(ws) => {
                        let (connection, handle) = client::attach(ws, shared);
                        let _ = tx.send((i, Ok(handle), began.elapsed()));
                        drop(tx);
                        connection.run().await;
                    }
                    Err(failure) => {
                        let _ = tx.send((i, Err(failure), began.elapsed()));
                    }
                }
            });
        }
        let wait = match pacing {
            Some(s) if spawned < plan.users => {
                (start + s.offset(spawned as u64)).saturating_duration_since(Instant::now())
            }
            _ => Duration::from_secs(1),
        };
        match tokio::time::timeout(wait, rx.recv()).await {
            Ok(Some(outcome)) => {
                tally.add(plan, outcome);
                // Take whatever else is ready before deciding what to wait for next.
                while let Ok(outcome) = rx.try_recv() {
                    tally.add(plan, outcome);
                }
            }
            Ok(None) => bail!("connect tasks ended unexpectedly"),
            Err(_) => {}
        }
        if last_progress.elapsed() >= Duration::from_secs(5) && tally.received < plan.users {
            last_progress = Instant::now();
            eprintln!(
                "  connecting: {}/{} done, {} failed, {:.1} s",
                tally.received,
                plan.users,
                tally.failures.values().sum::<u64>(),
                start.elapsed().as_secs_f64()
            );
        }
    }
    let Tally {
        users,
        failures,
        latency,
        last_done,
        ..
    } = tally;
    let connected = users.iter().filter(|u| u.is_some()).count();
    Ok(Population {
        users: Arc::new(users),
        report: ConnectReport {
            attempted: plan.users,
            connected,
            failures,
            elapsed: last_done.saturating_duration_since(start),
            latency: Latency::of(&latency),
        },
        tasks,
    })
}

/// What one connect task reports: the user index, the outcome, and how long it took.
type Outcome = (usize, Result<Handle, client::ConnectFailure>, Duration);

/// The connect results gathered so far.
struct Tally {
    users: Vec<Option<User>>,
    failures: BTreeMap<String, u64>,
    latency: hdrhistogram::Histogram<u64>,
    received: usize,
    last_done: Instant,
}

impl Tally {
    fn add(&mut self, plan: &ConnectPlan, (i, result, took): Outcome) {
        self.received += 1;
        self.last_done = Instant::now();
        match result {
            Ok(handle) => {
                stats::record(&mut self.latency, took);
                self.users[i] = Some(User {
                    id: plan.user_id(i),
                    handle,
                });
            }
            Err(client::ConnectFailure(reason)) => {
                *self.failures.entry(reason).or_default() += 1;
            }
        }
    }
}

/// The source addresses in use, for the summary.
pub fn describe_sources(sources: &SourceAddrs) -> String {
    match sources.0.as_slice() {
        [] => "the kernel's choice".into(),
        [one] => one.to_string(),
        many => format!(
            "{}..{} ({} addresses)",
            many[0],
            many[many.len() - 1],
            many.len()
        ),
    }
}

impl Population {
    /// Fails, listing why, unless every user connected.
    pub fn require_all(&self) -> anyhow::Result<()> {
        let failed = self.report.failed();
        if failed > 0 {
            bail!(
                "{failed} of {} users could not connect: {}",
                self.report.attempted,
                format_counts(&self.report.failures)
            );
        }
        Ok(())
    }

    /// The connected users' handles in user order (all of them, after `require_all`).
    pub fn handles(&self) -> Vec<Handle> {
        self.users
            .iter()
            .flatten()
            .map(|u| u.handle.clone())
            .collect()
    }

    /// How many connections are still up.
    pub fn alive(&self) -> usize {
        self.users
            .iter()
            .flatten()
            .filter(|u| u.handle.is_alive())
            .count()
    }

    /// Leaves and closes every connection, waiting up to `limit` for the closing handshakes.
    pub async fn close(mut self, limit: Duration) {
        for user in self.users.iter().flatten() {
            user.handle.close();
        }
        let _ = tokio::time::timeout(limit, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        self.tasks.abort_all();
    }
}

/// `"3 timeout, 1 refused: unauthorized (invalid)"`.
pub fn format_counts(counts: &BTreeMap<String, u64>) -> String {
    counts
        .iter()
        .map(|(reason, n)| format!("{n} {reason}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A group the generator created.
pub struct Group {
    /// The conversation's id.
    pub id: String,
    pub conversation: Arc<Conversation>,
    /// Indexes of its members into the population's users; the first is the owner.
    pub members: Vec<usize>,
}

/// Creates a group owned by `members[0]` holding all of `members` (indexes into `users`):
/// `conversation:create` with up to [`CREATE_MAX_MEMBERS`], then `conversation:members:add`
/// in chunks of [`ADD_CHUNK`] for the rest.
pub async fn create_group(
    users: &[Option<User>],
    members: Vec<usize>,
    title: &str,
) -> anyhow::Result<Group> {
    let user = |i: usize| users[i].as_ref().context("a group member is not connected");
    let owner = user(members[0])?;
    let ids: Vec<&str> = members[1..]
        .iter()
        .map(|&i| user(i).map(|u| u.id.as_str()))
        .collect::<anyhow::Result<_>>()?;
    let first = ids.len().min(CREATE_MAX_MEMBERS - 1);
    let answer = owner
        .handle
        .request(
            "conversation:create",
            json!({ "kind": "group", "title": title, "member_ids": &ids[..first] }),
            SETUP_TIMEOUT,
        )
        .await?;
    let data = envelope_data(&answer, "conversation:create")?;
    let id = data["conversation"]["id"]
        .as_str()
        .context("conversation:create: the answer has no conversation id")?
        .to_owned();
    for chunk in ids[first..].chunks(ADD_CHUNK) {
        let answer = owner
            .handle
            .request(
                "conversation:members:add",
                json!({ "conversation_id": id, "user_ids": chunk }),
                SETUP_TIMEOUT,
            )
            .await?;
        envelope_data(&answer, "conversation:members:add").map_err(|e| {
            e.context(format!(
                "growing a group past {CREATE_MAX_MEMBERS} members takes conversation:members:add, \
                 and a server that caps groups (confab: CONFAB_MAX_GROUP_MEMBERS, default 100,000) \
                 must allow {} members",
                members.len()
            ))
        })?;
    }
    Ok(Group {
        conversation: Arc::new(Conversation::new(&id)),
        id,
        members,
    })
}

/// The `data` of an ok envelope, or an error naming the code and message.
pub fn envelope_data<'a>(answer: &'a Value, event: &str) -> anyhow::Result<&'a Value> {
    if answer["ok"] == json!(true) {
        return Ok(&answer["data"]);
    }
    let error = &answer["error"];
    bail!(
        "{event} failed: {} ({})",
        error["code"].as_str().unwrap_or("no error code"),
        error["message"].as_str().unwrap_or("no message")
    )
}

/// Splits `users` consecutive users into groups of `size`. When they don't divide evenly the
/// last group is smaller, and a single user left over joins the group before it (a group of
/// one would have nobody to deliver to).
pub fn group_ranges(users: usize, size: usize) -> Vec<std::ops::Range<usize>> {
    let size = size.max(2);
    let mut ranges: Vec<_> = (0..users.div_ceil(size))
        .map(|g| g * size..((g + 1) * size).min(users))
        .collect();
    if ranges.len() > 1 && ranges.last().is_some_and(|r| r.len() == 1) {
        ranges.pop();
        if let Some(last) = ranges.last_mut() {
            last.end = users;
        }
    }
    ranges
}

/// Creates groups of `size` from consecutive users (see [`group_ranges`]), at most
/// `concurrency` creations at a time.
pub async fn create_groups(
    users: &Arc<Vec<Option<User>>>,
    size: usize,
    concurrency: usize,
    title_prefix: &str,
) -> anyhow::Result<Vec<Group>> {
    let ranges = group_ranges(users.len(), size);
    let count = ranges.len();
    let semaphore = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut set = JoinSet::new();
    for (g, range) in ranges.into_iter().enumerate() {
        let members: Vec<usize> = range.collect();
        let users = users.clone();
        let semaphore = semaphore.clone();
        let title = format!("{title_prefix} {g}");
        set.spawn(async move {
            let _permit = semaphore.acquire_owned().await;
            (g, create_group(&users, members, &title).await)
        });
    }
    let mut groups: Vec<Option<Group>> = (0..count).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        let (g, result) = joined.context("a group creation task failed")?;
        groups[g] = Some(result.with_context(|| format!("creating group {g}"))?);
    }
    Ok(groups.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_cover_every_user() {
        assert_eq!(group_ranges(10, 5), vec![0..5, 5..10]);
        assert_eq!(group_ranges(12, 5), vec![0..5, 5..10, 10..12]);
        assert_eq!(group_ranges(11, 5), vec![0..5, 5..11]);
        assert_eq!(group_ranges(3, 10), vec![0..3]);
        assert_eq!(group_ranges(1, 10), vec![0..1]);
    }

    #[test]
    fn formats_counts() {
        let counts = BTreeMap::from([("timeout".to_owned(), 3), ("http 503".to_owned(), 1)]);
        assert_eq!(format_counts(&counts), "1 http 503, 3 timeout");
    }
}
