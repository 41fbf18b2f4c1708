//! The command line. One set of options for every scenario, so the same flag means the same
//! thing everywhere; each scenario's defaults are listed in its description.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// Load generator for Socket.IO chat servers that speak confab's protocol (confab itself, or
/// the Node.js peer in bench/peers/node-socketio).
///
/// Each scenario prints one JSON line of results on stdout (sweep: one per step, then the
/// result) and a human summary on stderr. Latencies are measured from each message's planned
/// send time (open-loop), in milliseconds.
#[derive(Debug, Parser)]
#[command(name = "confab-bench", version, after_help = AFTER_HELP)]
pub struct Args {
    /// What to measure.
    #[arg(value_enum)]
    pub scenario: Scenario,

    /// The server to drive, e.g. http://127.0.0.1:3001. Repeat for several nodes: users are
    /// spread over them round-robin (multinode needs at least two).
    #[arg(
        long = "url",
        value_name = "URL",
        default_value = "http://127.0.0.1:3001"
    )]
    pub urls: Vec<String>,

    /// The HS256 secret the server verifies tokens with (confab: CONFAB_JWT_SECRET, the Node
    /// peer: JWT_SECRET). Each user gets a token for `sub` = "<user prefix>-<index>".
    #[arg(long, env = "CONFAB_BENCH_SECRET", hide_env_values = true)]
    pub secret: String,

    /// Simulated users, each with one socket. [default: 1000]
    #[arg(long, value_name = "N")]
    pub users: Option<usize>,

    /// Members per group (chat, multinode, sweep); consecutive users form a group, the last
    /// one smaller if --users isn't a multiple. fanout puts all users in one group. connect:
    /// users join groups of K first, so the measured connects load memberships.
    /// [default: 10]
    #[arg(long, value_name = "K")]
    pub group_size: Option<usize>,

    /// Messages per second, in total, on a fixed schedule (open loop: sends don't wait for
    /// acks), each from a random user to its group. sweep: the first rate tried.
    /// [default: chat/multinode 1000, fanout 10, sweep 1000]
    #[arg(long, value_name = "MSGS_PER_SEC")]
    pub rate: Option<f64>,

    /// Seconds of sending (connect: seconds to stay idle after connecting; sweep: per step).
    /// [default: connect 5, chat/multinode/fanout 10, sweep 10, soak 600]
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,

    /// fanout: members of the group in all, owner included; those beyond --users never connect
    /// ("<user prefix>-away-<index>", added in requests of 1,000). A group larger than the
    /// sockets one machine holds (a server process has at most ~19,900 with an open-file limit
    /// of 20,000): each message is stored once and delivered to the --users - 1 connected
    /// members. [default: --users]
    #[arg(long, value_name = "N")]
    pub group_members: Option<usize>,

    /// Seconds to wait after the last send for outstanding acks and deliveries (the wait ends
    /// early once everything arrived). Whatever is still missing then counts as lost or
    /// no_ack.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub grace: f64,

    /// Seconds to wait after creating the groups before sending, so the servers finish
    /// joining members to rooms (the Node peer's Redis adapter does this asynchronously).
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    pub settle: f64,

    /// Message body length in characters.
    #[arg(long, value_name = "CHARS", default_value_t = 100)]
    pub body_chars: usize,

    /// Source addresses for the client sockets: "auto" (127.0.0.2 and up, one per 10,000
    /// sockets, when the server is on IPv4 loopback; otherwise the kernel's choice), "none"
    /// (the kernel's choice), or addresses and ranges such as 127.0.0.2-127.0.0.9,127.0.1.1.
    /// Each address has its own ephemeral port range, so more addresses fit more sockets.
    #[arg(long, value_name = "SPEC", default_value = "auto")]
    pub source_ips: String,

    /// Connects in flight at once. Keeps a connect storm from tripping the server's limits
    /// (raise it to measure exactly that): the default stays below a listen backlog of 128, the
    /// one Rust's std and mio use, beyond which the kernel drops SYNs and a connect waits the
    /// 1 s SYN retransmit.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub connect_concurrency: usize,

    /// Connects started per second; 0 starts them as fast as --connect-concurrency allows.
    #[arg(long, value_name = "PER_SEC", default_value_t = 0.0)]
    pub connect_rate: f64,

    /// Seconds one connect (TCP, upgrade, Engine.IO open, Socket.IO CONNECT) may take.
    #[arg(long, value_name = "SECS", default_value_t = 15.0)]
    pub connect_timeout: f64,

    /// A server process to watch: its VmRSS (before and after connecting, for RSS per
    /// connection) and its CPU time during the run, from /proc/<pid>. Repeat for several.
    #[arg(long = "server-pid", value_name = "PID")]
    pub server_pids: Vec<u32>,

    /// Also report the CPU use of every process with this command name during the run, e.g.
    /// `postgres` (all its backends) or `redis-server`. Repeat for several.
    #[arg(long = "watch-comm", value_name = "NAME")]
    pub watch_comms: Vec<String>,

    /// Also report the CPU use of every process whose command line contains this text, e.g.
    /// the database name, which PostgreSQL shows in its backends' command lines (so other
    /// databases' work on a shared cluster is left out). Repeat for several.
    #[arg(long = "watch-cmdline", value_name = "TEXT")]
    pub watch_cmdlines: Vec<String>,

    /// Also append each JSON line to this file.
    #[arg(long, value_name = "FILE")]
    pub json_out: Option<PathBuf>,

    /// Prefix of the user ids; the default is fresh per run ("b<time>"), so runs against the
    /// same database don't share users or their conversations.
    #[arg(long, value_name = "PREFIX")]
    pub user_prefix: Option<String>,

    /// Seed for picking senders, for repeatable runs. [default: random]
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,

    /// Worker threads of the generator's runtime. One core keeps thousands of sockets busy;
    /// more let the generator use more of the machine, and leave less for the server.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub threads: usize,

    /// A label copied into the JSON line (e.g. "confab-pg" or "node-peer").
    #[arg(long, value_name = "TEXT")]
    pub label: Option<String>,

    /// The Socket.IO parser the simulated clients use: `json` (the default parser) or `msgpack`
    /// (as socket.io-msgpack-parser encodes packets; the server learns it from the first packet).
    #[arg(long, value_name = "PARSER", default_value = "json", value_parser = ["json", "msgpack"])]
    pub parser: String,

    /// Offer `permessage-deflate` as browsers do; compressed server messages are inflated (the
    /// generator's own messages go uncompressed). Bytes on the wire are counted either way.
    #[arg(long)]
    pub deflate: bool,

    /// Exit with status 2 when the result shows lost messages, errors, duplicates, unexpected
    /// disconnects or failed connects (sweep: when no rate passed).
    #[arg(long)]
    pub strict: bool,

    /// sweep: the rates to try, in order, e.g. 500,1000,2000. Without it the sweep starts at
    /// --rate, doubles while steps pass, then bisects between the last pass and the first
    /// failure.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub rates: Vec<f64>,

    /// sweep: a step passes when its p99 ack latency is at most this (and nothing is lost and
    /// no send failed).
    #[arg(long, value_name = "MS", default_value_t = 50.0)]
    pub p99_bound_ms: f64,

    /// sweep: the highest rate to try.
    #[arg(long, value_name = "MSGS_PER_SEC", default_value_t = 100_000.0)]
    pub max_rate: f64,

    /// sweep: stop bisecting when the gap between the best pass and the lowest failure is at
    /// most this fraction of the pass.
    #[arg(long, value_name = "FRACTION", default_value_t = 0.1)]
    pub precision: f64,

    /// sweep: the most steps to run.
    #[arg(long, value_name = "N", default_value_t = 12)]
    pub max_steps: usize,

    /// search: messages to store before searching, sent at --rate through the server, so
    /// they are indexed as chat indexes them. [default: 1000000]
    #[arg(long, value_name = "N")]
    pub messages: Option<u64>,

    /// search: words in the vocabulary the messages are written in (`w0` … , skewed like
    /// real text: `w0` is in about half the messages).
    #[arg(long, value_name = "N", default_value_t = 5000)]
    pub vocabulary: u32,

    /// search: one-word searches to time, one at a time, each for a word drawn uniformly from
    /// the vocabulary; then a tenth as many for `w0`, the commonest word.
    #[arg(long, value_name = "N", default_value_t = 300)]
    pub queries: usize,
}

/// `confab-bench report`: writes docs/BENCHMARKS.md and its SVG plots from the JSON lines
/// of a measuring run (bench/run.sh).
#[derive(Debug, Parser)]
#[command(name = "confab-bench report")]
pub struct ReportArgs {
    /// Results files (JSON lines from confab-bench and bench/measure.sh). When a system and
    /// scenario occur more than once, the last line wins.
    #[arg(long = "results", value_name = "FILE", num_args = 1.., required_unless_present = "stamp")]
    pub results: Vec<PathBuf>,

    /// The Markdown document to write.
    #[arg(long, value_name = "FILE", default_value = "docs/BENCHMARKS.md")]
    pub out: PathBuf,

    /// Where the SVG plots go. [default: bench/ beside --out]
    #[arg(long, value_name = "DIR")]
    pub plots_dir: Option<PathBuf>,

    /// Markdown appended as the document's "Notes" (analysis, profiles), so it survives
    /// regenerating the figures.
    #[arg(long, value_name = "FILE")]
    pub notes: Option<PathBuf>,

    /// Instead of a report: append a record of the machine (cores, CPU model, RAM, kernel,
    /// open-file limit), the git commit, the date and --command to FILE, for the report made
    /// from it later.
    #[arg(long, value_name = "FILE")]
    pub stamp: Option<PathBuf>,

    /// With --stamp: the command that measured, as the report should show it.
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub command: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// --users connect and stay idle for --duration: connects/s, connect latency, and the
    /// server's RSS per connection (with --server-pid).
    Connect,
    /// --users in groups of --group-size; --rate msgs/s for --duration from random members:
    /// ack and delivery latency, acked/s, delivered/s, lost, errors, out-of-order deliveries.
    Chat,
    /// All --users in one group (created with conversation:create, then
    /// conversation:members:add beyond 1000); --rate msgs/s: latency to the last member.
    Fanout,
    /// chat with users spread round-robin over several --url nodes sharing a database (and
    /// Redis): cross-node delivery.
    Multinode,
    /// chat at increasing rates: the highest rate whose p99 ack latency stays within
    /// --p99-bound-ms with nothing lost (the sustainable throughput).
    Sweep,
    /// chat at one --rate for a long --duration (default 600 s), with a series of one entry per
    /// second: acks, ack p50/p99/max, confab's figures from its /metrics (the slowest message
    /// inside the server, the runtime's latest wake and busy share, the writers' wait for a
    /// core) and (with --server-pid) the servers' RSS and CPU. Finds the stalls and the memory growth a short run hides.
    Soak,
    /// Stores --messages (default 1,000,000) in groups of --group-size at --rate (default
    /// 3000), written in a vocabulary of --vocabulary words, with user 0 a member of 50 groups;
    /// then times --queries one-word `message:search`es by user 0 (a random word, then the
    /// commonest) and checks every result is the user's and holds the word. Reports the
    /// storing phase as chat does (throughput with indexing on) and the searches' latency.
    Search,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Connect => "connect",
            Scenario::Chat => "chat",
            Scenario::Fanout => "fanout",
            Scenario::Multinode => "multinode",
            Scenario::Sweep => "sweep",
            Scenario::Soak => "soak",
            Scenario::Search => "search",
        }
    }
}

const AFTER_HELP: &str = "\
Examples:
  confab-bench connect --users 10000 --secret $S --server-pid $(pgrep -n confab)
  confab-bench chat --users 1000 --group-size 10 --rate 5000 --duration 20 --secret $S
  confab-bench fanout --users 5000 --rate 5 --secret $S   # confab needs CONFAB_MAX_GROUP_MEMBERS=5000
  confab-bench multinode --url http://127.0.0.1:3001 --url http://127.0.0.1:3002 --secret $S
  confab-bench sweep --users 1000 --rate 1000 --duration 10 --secret $S --json-out sweep.jsonl
  confab-bench soak --users 1000 --rate 5000 --duration 600 --secret $S --server-pid $(pgrep -n confab)
  confab-bench search --users 5000 --messages 1000000 --rate 3000 --secret $S

  confab-bench report --results bench/results/run.jsonl --out docs/BENCHMARKS.md

Exit status: 0 done, 1 could not run (bad options, connects or setup failed), 2 with --strict
when the result shows a problem.";
