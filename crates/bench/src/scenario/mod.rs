//! The scenarios, and what they share: turning the options into a plan, connecting, the send
//! loop of a measured phase, and resource figures around it.

pub mod chat;
pub mod connect;
pub mod fanout;
pub mod search;
pub mod soak;
pub mod sweep;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};

use crate::capacity::{self, SourceAddrs};
use crate::cli::{Args, Scenario};
use crate::client::{Handle, Shared, Target};
use crate::population::{self, ConnectPlan, Group, Population};
use crate::report::{self, Reporter, round};
use crate::schedule::Schedule;
use crate::stats::{AckOutcome, PhaseResult, Recorder};
use crate::tokens::Minter;
use crate::usage::{self, CpuTime, ProcessMatch};

/// How a run ended, for the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Clean: nothing lost, no errors.
    Clean,
    /// Finished, but the figures show a problem (lost messages, errors, …).
    Problems,
}

/// The options, checked and resolved, plus what every scenario uses.
pub struct Bench {
    pub args: Args,
    pub scenario: Scenario,
    pub targets: Vec<Arc<Target>>,
    pub users: usize,
    pub duration: Duration,
    pub grace: Duration,
    pub recorder: Arc<Recorder>,
    pub shared: Arc<Shared>,
    pub reporter: Reporter,
    pub plan: ConnectPlan,
    pub seed: u64,
}

/// Runs the scenario the options name.
pub async fn run(args: Args) -> anyhow::Result<Verdict> {
    let bench = Bench::new(args)?;
    match bench.scenario {
        Scenario::Connect => connect::run(&bench).await,
        Scenario::Chat | Scenario::Multinode => chat::run(&bench).await,
        Scenario::Fanout => fanout::run(&bench).await,
        Scenario::Sweep => sweep::run(&bench).await,
        Scenario::Soak => soak::run(&bench).await,
        Scenario::Search => search::run(&bench).await,
    }
}

impl Bench {
    fn new(args: Args) -> anyhow::Result<Self> {
        let scenario = args.scenario;
        let users = args.users.unwrap_or(1000);
        if users == 0 {
            bail!("--users must be at least 1");
        }
        let duration = secs(
            "--duration",
            args.duration.unwrap_or(match scenario {
                Scenario::Connect => 5.0,
                Scenario::Soak => 600.0,
                _ => 10.0,
            }),
        )?;
        let grace = secs("--grace", args.grace)?;
        if args.secret.len() < 16 {
            // confab refuses shorter secrets; say so here rather than with 10,000 refusals.
            eprintln!("warning: --secret is shorter than 16 bytes; confab would refuse it");
        }
        let targets = args
            .urls
            .iter()
            .map(|u| {
                Target::parse(u)
                    .map(|t| Arc::new(t.with_wire(args.parser == "msgpack", args.deflate)))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        if scenario == Scenario::Multinode && targets.len() < 2 {
            eprintln!("warning: multinode with one --url measures a single node");
        }

        let loopback = targets.iter().all(|t| t.is_loopback_v4());
        let sources = SourceAddrs::parse(&args.source_ips, users, loopback)?;
        let open_files = capacity::raise_open_file_limit()?;
        capacity::check(
            users,
            open_files,
            sources.0.len(),
            capacity::ephemeral_ports(),
        )?;

        let recorder = Arc::new(Recorder::new());
        let body: String = "x".repeat(args.body_chars.max(1));
        let mut shared = Shared::new(recorder.clone(), &body, args.parser == "msgpack");
        if scenario == Scenario::Search {
            shared = shared.with_words(args.vocabulary);
        }
        let shared = Arc::new(shared);
        let user_prefix = args.user_prefix.clone().unwrap_or_else(fresh_prefix);
        let plan = ConnectPlan {
            targets: targets.clone(),
            sources,
            user_prefix,
            users,
            concurrency: args.connect_concurrency,
            rate: args.connect_rate.max(0.0),
            timeout: secs("--connect-timeout", args.connect_timeout)?,
            // Long enough for any run; short enough that a leaked token is soon useless.
            minter: Minter::new(&args.secret, Duration::from_secs(6 * 3600)),
        };
        let seed = args.seed.unwrap_or_else(|| rand::rng().random());
        Ok(Self {
            reporter: Reporter {
                json_out: args.json_out.clone(),
            },
            scenario,
            targets,
            users,
            duration,
            grace,
            recorder,
            shared,
            plan,
            seed,
            args,
        })
    }

    /// The fields every JSON line starts with.
    pub fn header(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("scenario".into(), json!(self.scenario.name()));
        if let Some(label) = &self.args.label {
            m.insert("label".into(), json!(label));
        }
        m.insert(
            "urls".into(),
            json!(
                self.targets
                    .iter()
                    .map(|t| t.url.as_str())
                    .collect::<Vec<_>>()
            ),
        );
        m.insert("users".into(), json!(self.users));
        m
    }

    /// Connects every user; fails unless all of them connected.
    pub async fn connect_all(&self) -> anyhow::Result<Population> {
        eprintln!(
            "connecting {} users to {} ({} in flight, sources: {})",
            self.users,
            self.targets
                .iter()
                .map(|t| t.url.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            self.plan.concurrency,
            population::describe_sources(&self.plan.sources)
        );
        let population = population::connect(&self.plan, &self.shared).await?;
        population.require_all()?;
        let r = &population.report;
        eprintln!(
            "connected {} users in {:.2} s ({}/s, p99 {} ms)",
            r.connected,
            r.elapsed.as_secs_f64(),
            r.per_sec(),
            r.latency.p99
        );
        Ok(population)
    }

    /// The `connect` part of a JSON line.
    pub fn connect_fields(population: &Population) -> Value {
        let r = &population.report;
        json!({
            "connected": r.connected,
            "failed": r.failed(),
            "per_s": r.per_sec(),
            "elapsed_s": round(r.elapsed.as_secs_f64(), 3),
            "ms": report::latency(&r.latency),
        })
    }
}

fn secs(flag: &str, value: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .with_context(|| format!("{flag}: {value} is not a number of seconds"))
}

/// A user prefix unlikely to repeat: "b" and the time in base 36.
fn fresh_prefix() -> String {
    let mut n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let mut digits = Vec::new();
    while n > 0 {
        digits.push(char::from_digit((n % 36) as u32, 36).expect("digit below 36"));
        n /= 36;
    }
    format!("b{}", digits.iter().rev().collect::<String>())
}

/// What to watch besides the generator: server processes by pid and by command name.
pub struct Watch {
    pub pids: Vec<u32>,
    pub processes: Vec<ProcessMatch>,
    /// The generator's worker threads, for the report.
    pub threads: usize,
}

impl Bench {
    pub fn watch(&self) -> Watch {
        Watch {
            pids: self.args.server_pids.clone(),
            processes: self
                .args
                .watch_comms
                .iter()
                .map(|c| ProcessMatch::Comm(c.clone()))
                .chain(
                    self.args
                        .watch_cmdlines
                        .iter()
                        .map(|t| ProcessMatch::CmdlineContains(t.clone())),
                )
                .collect(),
            threads: self.args.threads,
        }
    }
}

/// CPU and traffic figures over a stretch of time, for the generator and the watched servers.
pub struct Window {
    started: Instant,
    generator: CpuTime,
    traffic: (u64, u64),
    threads: usize,
    servers: Vec<(u32, Option<CpuTime>)>,
    /// Processes watched by command name (`--watch-comm`).
    named: Vec<(ProcessMatch, CpuTime)>,
    machine: Option<(u64, u64)>,
}

impl Window {
    pub fn open(watch: &Watch, recorder: &Recorder) -> Self {
        Self {
            started: Instant::now(),
            generator: usage::self_cpu(),
            traffic: recorder.traffic(),
            threads: watch.threads,
            servers: watch
                .pids
                .iter()
                .map(|&pid| (pid, usage::process_cpu(pid).ok()))
                .collect(),
            named: watch
                .processes
                .iter()
                .map(|what| (what.clone(), usage::processes_cpu(what)))
                .collect(),
            machine: usage::machine_cpu().ok(),
        }
    }

    /// `{"generator": {...}, "server": {...}, "machine": {...}}` fields for the time since
    /// `open`. Every `cpu_pct` is of one core: 100 means one core fully busy, so the machine's
    /// tops out at 100 × cores. The machine's figure includes everything else running, such as
    /// PostgreSQL, and shows whether the cores were saturated.
    pub fn close(&self, recorder: &Recorder) -> Map<String, Value> {
        let wall = self.started.elapsed().as_secs_f64().max(1e-9);
        let pct = |cpu: Duration| round(cpu.as_secs_f64() / wall * 100.0, 1);
        let spent = usage::self_cpu().since(&self.generator);
        let (frames, bytes) = recorder.traffic();
        let mut m = Map::new();
        m.insert(
            "generator".into(),
            json!({
                "threads": self.threads,
                "cpu_pct": pct(spent.total()),
                "cpu_user_s": round(spent.user.as_secs_f64(), 3),
                "cpu_sys_s": round(spent.system.as_secs_f64(), 3),
                "rss_kib": usage::self_rss_kib().ok(),
                "frames_in": frames - self.traffic.0,
                "mib_in": round((bytes - self.traffic.1) as f64 / (1024.0 * 1024.0), 1),
            }),
        );
        if !self.servers.is_empty() {
            let mut cpu = Duration::ZERO;
            let mut rss = 0;
            for (pid, before) in &self.servers {
                if let (Some(before), Ok(now)) = (before, usage::process_cpu(*pid)) {
                    cpu += now.since(before).total();
                }
                rss += usage::rss_kib(*pid).unwrap_or(0);
            }
            m.insert(
                "server".into(),
                json!({
                    "pids": self.servers.iter().map(|(pid, _)| pid).collect::<Vec<_>>(),
                    "cpu_pct": pct(cpu),
                    "rss_kib": rss,
                }),
            );
        }
        if !self.named.is_empty() {
            let watched: Map<String, Value> = self
                .named
                .iter()
                .map(|(what, before)| {
                    let spent = usage::processes_cpu(what).since(before);
                    (what.label(), json!(pct(spent.total())))
                })
                .collect();
            m.insert("watched_cpu_pct".into(), Value::Object(watched));
        }
        if let (Some((busy0, total0)), Ok((busy1, total1))) = (self.machine, usage::machine_cpu()) {
            let cores = usage::cores();
            let busy = (busy1 - busy0) as f64 / (total1 - total0).max(1) as f64;
            let saturated = busy >= 0.9;
            if saturated {
                eprintln!(
                    "warning: the machine's {cores} cores were {:.0}% busy (generator {:.0}%, \
                     watched servers {:.0}%, everything else the rest, of one core each): \
                     latencies include waiting for a CPU",
                    busy * 100.0,
                    m["generator"]["cpu_pct"].as_f64().unwrap_or(0.0),
                    m.get("server")
                        .and_then(|s| s["cpu_pct"].as_f64())
                        .unwrap_or(0.0),
                );
            }
            m.insert(
                "machine".into(),
                json!({
                    "cores": cores,
                    "cpu_pct": round(busy * cores as f64 * 100.0, 1),
                    "saturated": saturated,
                }),
            );
        }
        m
    }
}

/// Who may send, and to which conversation.
struct Senders {
    handles: Vec<Handle>,
    groups: Vec<Group>,
    /// For each user, the group it sends to.
    group_of: Vec<usize>,
}

/// The send loop of measured phases over one set of users and groups.
pub struct Load {
    senders: Arc<Senders>,
    /// Taken by the dispatcher thread during a phase and handed back after.
    rng: Option<SmallRng>,
    recorder: Arc<Recorder>,
}

/// One measured phase: its figures, and whether everything arrived before the grace ran out.
pub struct PhaseOutcome {
    pub result: PhaseResult,
    pub settled: bool,
    pub usage: Map<String, Value>,
}

impl Load {
    /// Senders are all members of `groups`, picked uniformly.
    pub fn new(
        population: &Population,
        groups: Vec<Group>,
        seed: u64,
        recorder: Arc<Recorder>,
    ) -> Self {
        let handles = population.handles();
        let mut group_of = vec![usize::MAX; handles.len()];
        for (g, group) in groups.iter().enumerate() {
            for &m in &group.members {
                group_of[m] = g;
            }
        }
        Self {
            senders: Arc::new(Senders {
                handles,
                groups,
                group_of,
            }),
            rng: Some(SmallRng::seed_from_u64(seed)),
            recorder,
        }
    }

    /// How many groups there are.
    pub fn group_count(&self) -> usize {
        self.senders.groups.len()
    }

    /// The groups, to change their members between phases (none may be running).
    pub fn groups_mut(&mut self) -> &mut [Group] {
        &mut Arc::get_mut(&mut self.senders)
            .expect("no phase is running")
            .groups
    }

    /// Sends at `rate` for `duration` on the open-loop schedule, then waits up to `grace` for
    /// what is outstanding.
    pub async fn run_phase(
        &mut self,
        id: u32,
        rate: f64,
        duration: Duration,
        grace: Duration,
        watch: &Watch,
    ) -> PhaseOutcome {
        let schedule = Schedule::new(rate, duration);
        let window = Window::open(watch, &self.recorder);
        // A moment's head start, so the first sends are not already late.
        let start = Instant::now() + Duration::from_millis(5);
        self.recorder.begin_phase(id, start, schedule);

        // The schedule runs on a thread of its own: its sleeps are precise to tens of
        // microseconds (tokio's timer ticks in milliseconds), and a burst of incoming frames on
        // the runtime can't hold the next send back. Each send is a push into a connection's
        // mailbox, which wakes that connection's task on the runtime.
        let senders = self.senders.clone();
        let recorder = self.recorder.clone();
        let mut rng = self.rng.take().expect("the rng is back after each phase");
        let dispatcher = tokio::task::spawn_blocking(move || {
            let mut next: u64 = 0;
            while next < schedule.total() {
                let due = schedule.due_by(Instant::now().saturating_duration_since(start));
                while next < due {
                    senders.dispatch(&recorder, &mut rng, id, next as u32);
                    next += 1;
                }
                if next < schedule.total() {
                    let wake = start + schedule.offset(next);
                    std::thread::sleep(wake.saturating_duration_since(Instant::now()));
                }
            }
            rng
        });
        self.rng = Some(match dispatcher.await {
            Ok(rng) => rng,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        });

        let deadline = Instant::now() + grace;
        let mut settled = self.recorder.settled();
        while !settled && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
            settled = self.recorder.settled();
        }
        let usage = window.close(&self.recorder);
        let result = self.recorder.end_phase().expect("a phase was begun");
        PhaseOutcome {
            result,
            settled,
            usage,
        }
    }

    /// Waits until no frame has arrived for `quiet` (at most `limit`), so a step that
    /// overloaded the server doesn't spill its backlog into the next one.
    pub async fn drain(&self, quiet: Duration, limit: Duration) {
        let until = Instant::now() + limit;
        while Instant::now() < until && self.recorder.quiet_for(Instant::now()) < quiet {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Senders {
    /// Hands message `msg` to a random user's connection, for that user's group.
    fn dispatch(&self, recorder: &Recorder, rng: &mut SmallRng, phase: u32, msg: u32) {
        let user = rng.random_range(0..self.handles.len());
        let group = &self.groups[self.group_of[user]];
        // Every other member has one socket, and the sender's own socket gets the ack instead.
        let expected = (group.members.len() - 1) as u32;
        recorder.dispatched(phase, msg, expected);
        if !self.handles[user].send_message(&group.conversation, phase, msg) {
            recorder.acked(
                phase,
                msg,
                Instant::now(),
                AckOutcome::Error("closed".into()),
            );
        }
    }
}

/// Fails unless every user is in some group (the send loop picks senders among all users).
pub fn check_groups(users: usize, groups: &[Group]) -> anyhow::Result<()> {
    let members: usize = groups.iter().map(|g| g.members.len()).sum();
    if members != users || groups.iter().any(|g| g.members.len() < 2) {
        bail!(
            "every group needs at least two members; use --users ≥ 2 and --group-size ≥ 2, with no single user left over"
        );
    }
    Ok(())
}
