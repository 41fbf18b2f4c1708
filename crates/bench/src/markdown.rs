//! `confab-bench report`: turns the JSON lines of a measuring run (bench/run.sh, which uses
//! bench/measure.sh) into docs/BENCHMARKS.md and SVG plots of latency against offered rate.
//!
//! Besides the scenarios' own lines, the results file holds two kinds of records the scripts
//! write: `{"record": "meta", …}` (the machine, commit, date and top-level command; written by
//! `confab-bench report --stamp`) and `{"record": "command", …}` (each server and generator
//! command line, and how busy the machine was before it started). Labels name the system
//! measured (`confab-pg`, `confab-sqlite`, `peer`), with a variant after a slash
//! (`confab-pg/capacity`). When a label and scenario occur more than once, the last wins.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::plot::{COLORS, Chart, Series, thousands};

/// The confab systems and the peer, in the order the tables list them.
pub const CONFAB_PG: &str = "confab-pg";
pub const CONFAB_SQLITE: &str = "confab-sqlite";
pub const PEER: &str = "peer";
const SYSTEMS: [&str; 3] = [CONFAB_PG, CONFAB_SQLITE, PEER];

/// The label variant of the open-file-limit runs.
pub const CAPACITY: &str = "capacity";
/// The label suffix of `connect` runs whose users were first put in groups (measure.sh's
/// `members`).
pub const MEMBERS: &str = "members";

/// A run counts as shared when this much CPU (100 = one core) went to processes that are
/// neither the server, the generator nor the watched database.
const SHARED_PCT: f64 = 30.0;
/// measure.sh records how busy the cores were before each run; this much counts as busy.
const BUSY_BEFORE_PCT: f64 = 25.0;

/// The lines of one or more results files, split by kind.
#[derive(Debug, Default)]
pub struct Results {
    pub meta: Option<Value>,
    pub commands: Vec<Value>,
    pub lines: Vec<Value>,
    pub sources: Vec<String>,
}

impl Results {
    pub fn load(paths: &[PathBuf]) -> anyhow::Result<Self> {
        let mut results = Results::default();
        for path in paths {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            results
                .add(&text)
                .with_context(|| format!("in {}", path.display()))?;
            results.sources.push(path.display().to_string());
        }
        Ok(results)
    }

    /// Adds the JSON lines of `text`; blank lines are skipped, anything else must parse.
    pub fn add(&mut self, text: &str) -> anyhow::Result<()> {
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let value: Value = serde_json::from_str(line)
                .with_context(|| format!("line {} is not JSON", n + 1))?;
            match value.get("record").and_then(Value::as_str) {
                Some("meta") => self.meta = Some(value),
                Some("command") => self.commands.push(value),
                // Other records (bench/probe.py's) are about a result, not results.
                None if value.get("scenario").is_some() => self.lines.push(value),
                _ => {}
            }
        }
        Ok(())
    }

    /// The last plain result (not a sweep step or summary) of `label` in `scenario`.
    pub fn last(&self, label: &str, scenario: &str) -> Option<&Value> {
        self.lines.iter().rev().find(|l| {
            str_at(l, "label") == Some(label)
                && str_at(l, "scenario") == Some(scenario)
                && l.get("step").is_none()
                && l.get("result").is_none()
        })
    }

    /// The last sweep summary of `label`.
    pub fn sweep(&self, label: &str) -> Option<&Value> {
        self.lines.iter().rev().find(|l| {
            str_at(l, "label") == Some(label)
                && str_at(l, "scenario") == Some("sweep")
                && l.get("result").is_some()
        })
    }

    /// The steps of the last sweep of `label`: those after the summary before it (a sweep
    /// writes its steps, then its summary), or after the last summary if the sweep was cut
    /// short.
    pub fn sweep_steps(&self, label: &str) -> Vec<&Value> {
        let mut runs: Vec<Vec<&Value>> = vec![Vec::new()];
        for l in self
            .lines
            .iter()
            .filter(|l| str_at(l, "label") == Some(label) && str_at(l, "scenario") == Some("sweep"))
        {
            if l.get("result").is_some() {
                runs.push(Vec::new());
            } else if l.get("step").is_some() {
                runs.last_mut().expect("never empty").push(l);
            }
        }
        let last = runs.pop().expect("never empty");
        if last.is_empty() {
            runs.pop().unwrap_or_default()
        } else {
            last
        }
    }

    /// The command record of the last run of `label` in `scenario`.
    pub fn command(&self, label: &str, scenario: &str) -> Option<&Value> {
        self.commands
            .iter()
            .rev()
            .find(|c| str_at(c, "label") == Some(label) && str_at(c, "scenario") == Some(scenario))
    }
}

/// The value at a dotted path, e.g. `server.rss_per_conn_bytes`.
pub fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, key| v.get(key))
}

pub fn num(v: &Value, path: &str) -> Option<f64> {
    at(v, path).and_then(Value::as_f64)
}

fn str_at<'a>(v: &'a Value, path: &str) -> Option<&'a str> {
    at(v, path).and_then(Value::as_str)
}

/// The machine a run happens on, for the meta record.
pub fn machine_now() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "model name").then(|| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let mem_kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
    });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    json!({
        "cores": crate::usage::cores(),
        "cpu_model": model,
        "mem_total_kib": mem_kib,
        "kernel": kernel,
        "nofile": soft_open_file_limit(),
        "probe": crate::probe::run(),
    })
}

/// The soft open-file limit servers started from here inherit.
fn soft_open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The meta record: the machine, the commit, the time and the command that measured.
pub fn meta_record(command: &str) -> Value {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    json!({
        "record": "meta",
        "date": date,
        "commit": git(&["rev-parse", "--short=12", "HEAD"]),
        "dirty": git(&["status", "--porcelain", "--untracked-files=no"]).map(|s| !s.is_empty()),
        "command": command,
        "machine": machine_now(),
    })
}

/// What a target asks for.
#[derive(Debug, Clone, Copy)]
enum Goal {
    AtLeast(f64),
    AtMost(f64),
}

/// One row of the targets table.
struct TargetRow {
    name: &'static str,
    confab: Option<f64>,
    confab_text: String,
    peer: Option<f64>,
    peer_text: String,
    goal: Goal,
    goal_text: &'static str,
    unit: &'static str,
    /// Why the verdict doesn't count (smaller than the target's setting), if so.
    caveat: Option<String>,
    /// Extra conditions for a pass beyond the figure (e.g. nothing lost).
    clean: bool,
}

impl TargetRow {
    fn verdict(&self) -> String {
        let Some(v) = self.confab else {
            return "not measured".into();
        };
        let mut text = match self.goal {
            _ if !self.clean => "**miss**: lost messages or errors".to_owned(),
            Goal::AtLeast(t) if v >= t => "pass".to_owned(),
            Goal::AtMost(t) if v <= t => "pass".to_owned(),
            Goal::AtLeast(t) => format!(
                "**miss** by {} {} ({:.0}% of the target)",
                fmt_num(t - v),
                self.unit,
                v / t * 100.0
            ),
            Goal::AtMost(t) => format!(
                "**miss** by {} {} ({:.1}× the target)",
                fmt_num(v - t),
                self.unit,
                v / t
            ),
        };
        if let Some(c) = &self.caveat {
            let _ = write!(text, "; {c}");
        }
        text
    }
}

/// `confab / peer`, e.g. `3.20×`.
fn ratio(confab: Option<f64>, peer: Option<f64>) -> String {
    match (confab, peer) {
        (Some(c), Some(p)) if p != 0.0 => format!("{:.2}×", c / p),
        _ => "–".into(),
    }
}

/// A figure for a table: thousands separators, fewer decimals as it grows.
pub fn fmt_num(x: f64) -> String {
    // + 0.0 turns the -0.0 of an empty sum into 0.
    let x = x + 0.0;
    if x.abs() >= 100.0 || x.fract() == 0.0 {
        thousands(x.round())
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn opt(x: Option<f64>, unit: &str) -> String {
    match x {
        Some(x) if unit.is_empty() => fmt_num(x),
        Some(x) => format!("{} {unit}", fmt_num(x)),
        None => "–".into(),
    }
}

/// The sweep step at the sustainable rate (its deliveries/s), if any.
fn step_at<'a>(steps: &[&'a Value], rate: f64) -> Option<&'a Value> {
    steps
        .iter()
        .rev()
        .find(|s| num(s, "rate") == Some(rate) && s.get("passed") == Some(&json!(true)))
        .copied()
}

/// Why a line's figures may be off: the cores were saturated, other processes took CPU, or
/// the machine was busy before the run started.
pub fn conditions(line: &Value, command: Option<&Value>) -> Vec<String> {
    let mut out = Vec::new();
    let machine = num(line, "machine.cpu_pct");
    if at(line, "machine.saturated") == Some(&json!(true)) {
        out.push(format!(
            "saturated (all cores {:.0}% busy)",
            machine.unwrap_or(0.0) / num(line, "machine.cores").unwrap_or(1.0)
        ));
    }
    if let Some(machine) = machine {
        let cpu = |who: &str| {
            num(line, &format!("{who}.cpu_pct"))
                .or_else(|| num(line, &format!("{who}.connect_cpu_pct")))
        };
        // Connect lines measure the server and generator over the connects only; the
        // machine's figure covers a different span, so they can't be subtracted.
        if let (Some(server), Some(generator)) = (num(line, "server.cpu_pct"), cpu("generator")) {
            let watched: f64 = at(line, "watched_cpu_pct")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter(|(k, _)| !k.starts_with("cmdline~"))
                        .filter_map(|(_, v)| v.as_f64())
                        .sum()
                })
                .unwrap_or(0.0)
                + num(line, "postgres_cpu_pct").unwrap_or(0.0);
            let others = machine - server - generator - watched;
            if others >= SHARED_PCT {
                out.push(format!(
                    "shared ({others:.0}% of a core went to other processes)"
                ));
            }
        }
    }
    // How busy the machine was before the start says nothing about a sweep's later steps.
    if let Some(busy) = command.and_then(|c| num(c, "busy_before_pct"))
        && busy >= BUSY_BEFORE_PCT
        && line.get("step").is_none()
    {
        out.push(format!("busy before the start ({busy:.0}% of all cores)"));
    }
    out
}

/// How the report is made.
pub struct Options<'a> {
    /// Where the document goes; the plots go to `plots_dir`, linked relative to it.
    pub out: &'a Path,
    pub plots_dir: &'a Path,
    /// Markdown appended verbatim (analysis, profiles), so it survives regenerating.
    pub notes: Option<String>,
}

/// The document and the plots (file name, SVG).
pub struct Report {
    pub markdown: String,
    pub plots: Vec<(String, String)>,
}

/// Writes the report and its plots.
pub fn write(results: &Results, opts: &Options) -> anyhow::Result<()> {
    if results.lines.is_empty() {
        bail!("no results in {}", results.sources.join(", "));
    }
    let report = render(results, opts);
    std::fs::create_dir_all(opts.plots_dir)
        .with_context(|| format!("creating {}", opts.plots_dir.display()))?;
    for (name, svg) in &report.plots {
        let path = opts.plots_dir.join(name);
        std::fs::write(&path, svg).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(dir) = opts.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(opts.out, &report.markdown)
        .with_context(|| format!("writing {}", opts.out.display()))?;
    eprintln!(
        "wrote {} and {} plot(s) in {}",
        opts.out.display(),
        report.plots.len(),
        opts.plots_dir.display()
    );
    Ok(())
}

/// The plots' directory as the document links it.
fn plots_link(opts: &Options) -> String {
    let base = opts.out.parent().unwrap_or(Path::new(""));
    opts.plots_dir
        .strip_prefix(base)
        .unwrap_or(opts.plots_dir)
        .display()
        .to_string()
}

pub fn render(r: &Results, opts: &Options) -> Report {
    let mut md = String::new();
    let mut plots = Vec::new();
    let meta = r.meta.clone().unwrap_or(Value::Null);
    let peer_pg = r.sweep(PEER);

    md += "# Benchmarks\n\n";
    let _ = writeln!(
        md,
        "confab against the Node.js Socket.IO peer (`bench/peers/node-socketio`: Socket.IO 4.8, \
         the Redis adapter, PostgreSQL), each scenario run against both back to back, each on a \
         freshly started server, with the load generator (`confab-bench`) on the same machine. \
         Generated by `confab-bench report` from {}; regenerate with `bench/run.sh`.\n",
        if r.sources.is_empty() {
            "the results".to_owned()
        } else {
            r.sources
                .iter()
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    );

    // The machine.
    md += "## The machine\n\n| | |\n|---|---|\n";
    let m = meta.get("machine").cloned().unwrap_or(Value::Null);
    let cores = num(&m, "cores").or_else(|| r.lines.iter().find_map(|l| num(l, "machine.cores")));
    let _ = writeln!(md, "| cores | {} |", opt(cores, ""));
    let _ = writeln!(md, "| CPU | {} |", str_at(&m, "cpu_model").unwrap_or("–"));
    let _ = writeln!(
        md,
        "| RAM | {} |",
        num(&m, "mem_total_kib")
            .map(|k| format!("{:.1} GiB", k / (1024.0 * 1024.0)))
            .unwrap_or_else(|| "–".into())
    );
    let _ = writeln!(md, "| kernel | {} |", str_at(&m, "kernel").unwrap_or("–"));
    let _ = writeln!(md, "| open-file limit | {} |", opt(num(&m, "nofile"), ""));
    // Absent from runs recorded before the probe existed.
    if let (Some(rtt), Some(cpu)) = (
        num(&m, "probe.loopback_rtt_us"),
        num(&m, "probe.cpu_loop_ms"),
    ) {
        let _ = writeln!(
            md,
            "| speed at the start (lower is faster) | loopback TCP round trip {rtt} µs; fixed CPU loop {cpu} ms |"
        );
    }
    let _ = writeln!(md, "| date | {} |", str_at(&meta, "date").unwrap_or("–"));
    let _ = writeln!(
        md,
        "| commit | {}{} |",
        str_at(&meta, "commit")
            .map(|c| format!("`{c}`"))
            .unwrap_or_else(|| "–".into()),
        if meta.get("dirty") == Some(&json!(true)) {
            " (with uncommitted changes)"
        } else {
            ""
        }
    );
    md += "\nThe load generator, the server, PostgreSQL and Redis share these cores: the issue's \
           setting. Every figure below notes whether the cores were saturated or shared with \
           other work while it was measured.\n\n";

    // The targets.
    let rows = target_rows(r);
    md += "## Targets\n\n";
    md += "PostgreSQL backend, 1,000 users in groups of 10, unless the row says otherwise. \
           The peer runs on PostgreSQL in every row.\n\n";
    md += "| target | confab | Node peer | confab/peer | goal | verdict |\n|---|---|---|---|---|---|\n";
    for row in &rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            row.name,
            row.confab_text,
            row.peer_text,
            ratio(row.confab, row.peer),
            row.goal_text,
            row.verdict()
        );
    }
    md += "\n";
    if let Some(text) = limits_text(r) {
        md += &text;
    }

    // Conditions.
    let mut flagged = Vec::new();
    for l in &r.lines {
        let label = str_at(l, "label").unwrap_or("?");
        let scenario = str_at(l, "scenario").unwrap_or("?");
        let c = conditions(l, r.command(label, scenario));
        if !c.is_empty() {
            let what = match num(l, "step") {
                Some(step) => format!(
                    "{label} {scenario} step {step} ({} msgs/s)",
                    opt(num(l, "rate"), "")
                ),
                None => format!("{label} {scenario}"),
            };
            flagged.push(format!("- {what}: {}", c.join("; ")));
        }
    }
    md += "### Conditions\n\n";
    if flagged.is_empty() {
        md += "No run was saturated or shared: the cores were never all busy, and other \
               processes took less than a third of a core.\n\n";
    } else {
        md += "These runs had the machine saturated (all cores ≥ 90% busy: latencies include \
               waiting for a CPU) or shared with other work; their figures are pessimistic.\n\n";
        md += &flagged.join("\n");
        md += "\n\n";
    }

    // Per scenario.
    md += "## Figures by scenario\n\n";
    md += "Ratios are confab on PostgreSQL over the peer. Latencies are from each message's \
           planned send time (open loop), in milliseconds.\n\n";
    scenario_tables(r, &mut md);

    // The sweep plots.
    let link = plots_link(opts);
    for (file, title, field) in [
        (
            "sweep-ack-latency.svg",
            "Ack latency against offered rate (sweep)",
            "ack_ms",
        ),
        (
            "sweep-delivery-latency.svg",
            "Delivery latency against offered rate (sweep)",
            "delivery_ms",
        ),
    ] {
        if let Some(chart) = sweep_chart(r, title, field) {
            let _ = writeln!(md, "![{title}]({link}/{file})\n");
            plots.push((file.to_owned(), chart.to_svg()));
        }
    }
    if peer_pg.is_some() || r.sweep(CONFAB_PG).is_some() {
        md += "Solid lines are p99, dashed p50; the dotted line is the sweep's p99 bound. \
               Points are the sweep's steps, in order of rate.\n\n";
    }

    // The soaks: latency over time.
    if soak_table(r, &mut md) {
        let file = "soak-ack-latency.svg";
        if let Some(chart) = soak_chart(r) {
            let _ = writeln!(md, "![Ack latency over time (soak)]({link}/{file})\n");
            plots.push((file.to_owned(), chart.to_svg()));
            md += "Each point is one second of sends: solid lines its p99, dotted its maximum. \
                   A stall shows as a spike; memory that keeps growing shows in the RSS row.\n\n";
        }
    }

    search_table(r, &mut md);

    // The commands.
    md += "## Commands\n\n";
    if let Some(cmd) = str_at(&meta, "command") {
        let _ = writeln!(md, "The whole run:\n\n```sh\n{cmd}\n```\n");
    }
    if !r.commands.is_empty() {
        md += "Each measurement (servers started fresh; `$S` is the run's JWT secret, in \
               `CONFAB_BENCH_SECRET` for the generator):\n\n```sh\n";
        for c in &r.commands {
            let _ = writeln!(
                md,
                "# {} {}",
                str_at(c, "label").unwrap_or("?"),
                str_at(c, "scenario").unwrap_or("?")
            );
            if let Some(s) = str_at(c, "server") {
                let _ = writeln!(md, "{s}");
            }
            if let Some(b) = str_at(c, "bench") {
                let _ = writeln!(md, "{b}");
            }
        }
        md += "```\n\n";
    }

    if let Some(notes) = &opts.notes {
        md += "## Notes\n\n";
        md += notes.trim_end();
        md += "\n";
    }
    Report {
        markdown: md,
        plots,
    }
}

fn target_rows(r: &Results) -> Vec<TargetRow> {
    let sweep_row = |name, label: &str, goal: f64, goal_text| {
        let figure = |label: &str| {
            let summary = r.sweep(label)?;
            // null when no step passed: that is a figure too, the lowest there is.
            let rate = num(summary, "sustainable_rate").unwrap_or(0.0);
            let steps = r.sweep_steps(label);
            let deliveries = step_at(&steps, rate).and_then(|s| num(s, "delivered_per_s"));
            Some((rate, deliveries, summary))
        };
        let text = |f: &Option<(f64, Option<f64>, &Value)>| match f {
            Some((rate, Some(d), _)) => {
                format!("{} msgs/s ({} deliveries/s)", fmt_num(*rate), fmt_num(*d))
            }
            Some((rate, _, _)) if *rate == 0.0 => "no step passed".into(),
            Some((rate, None, _)) => format!("{} msgs/s", fmt_num(*rate)),
            None => "–".into(),
        };
        let (c, p) = (figure(label), figure(PEER));
        let caveat = c.as_ref().and_then(|(_, _, s)| {
            let (users, group) = (num(s, "users")?, num(s, "group_size")?);
            (users != 1000.0 || group != 10.0).then(|| {
                format!(
                    "{} users in groups of {}, not the target's setting",
                    fmt_num(users),
                    fmt_num(group)
                )
            })
        });
        TargetRow {
            name,
            confab: c.as_ref().map(|f| f.0),
            confab_text: text(&c),
            peer: p.as_ref().map(|f| f.0),
            peer_text: text(&p),
            goal: Goal::AtLeast(goal),
            goal_text,
            unit: "msgs/s",
            caveat,
            clean: true,
        }
    };
    let connect_caveat = |l: Option<&Value>| {
        let users = num(l?, "users")?;
        (users < 10_000.0).then(|| format!("at {} connections, not 10,000", fmt_num(users)))
    };
    let (cc, pc) = (r.last(CONFAB_PG, "connect"), r.last(PEER, "connect"));
    // The connect rate counts connects that load memberships (the `members` run) when there
    // is one; idle memory comes from the run without groups (a fresh server).
    let members = |label: &str| {
        r.last(&format!("{label}/{MEMBERS}"), "connect")
            .or_else(|| r.last(label, "connect"))
    };
    let (mc, mp) = (members(CONFAB_PG), members(PEER));
    let members_caveat = |l: Option<&Value>| {
        let l = l?;
        let mut notes = Vec::new();
        if let Some(users) = num(l, "users").filter(|&u| u < 10_000.0) {
            notes.push(format!("at {} connections, not 10,000", fmt_num(users)));
        }
        if num(l, "group_size").is_none() {
            notes.push("users without memberships".to_owned());
        }
        (!notes.is_empty()).then(|| notes.join("; "))
    };
    let mem = |l: Option<&Value>| l.and_then(|l| num(l, "server.rss_per_conn_bytes"));
    let rate = |l: Option<&Value>| l.and_then(|l| num(l, "connects_per_s"));
    let connect_clean = |l: Option<&Value>| l.is_none_or(|l| num(l, "failed") == Some(0.0));

    let capacity = |label: &str| {
        let full = format!("{label}/{CAPACITY}");
        let line = r.last(&full, "chat")?;
        let limit = r
            .command(&full, "chat")
            .and_then(|c| num(c, "server_nofile"));
        Some((line, limit))
    };
    let capacity_text = |c: Option<(&Value, Option<f64>)>| match c {
        Some((l, limit)) => format!(
            "{} connections{}, lost {}, errors {}",
            opt(num(l, "connect.connected"), ""),
            limit
                .map(|n| format!(" of a limit of {}", fmt_num(n)))
                .unwrap_or_default(),
            opt(num(l, "lost"), ""),
            at(l, "errors")
                .and_then(Value::as_object)
                .map(|e| e.values().filter_map(Value::as_f64).sum::<f64>())
                .map(fmt_num)
                .unwrap_or_else(|| "–".into())
        ),
        None => "–".into(),
    };
    let (ccap, pcap) = (capacity(CONFAB_PG), capacity(PEER));
    // Passes when every socket the limit leaves room for connected and chatted cleanly.
    let capacity_pass = ccap.is_some_and(|(l, _)| l.get("ok") == Some(&json!(true)));

    vec![
        sweep_row(
            "Sustainable persisted throughput (sweep, p99 ack ≤ 50 ms, lost 0)",
            CONFAB_PG,
            10_000.0,
            "≥ 10,000 msgs/s (90,000 deliveries/s)",
        ),
        sweep_row(
            "Sustainable throughput, **SQLite** backend (peer: PostgreSQL)",
            CONFAB_SQLITE,
            5_000.0,
            "≥ 5,000 msgs/s",
        ),
        TargetRow {
            name: "Idle memory: server RSS per connected socket",
            confab: mem(cc),
            confab_text: opt(mem(cc).map(|b| b / 1000.0), "KB"),
            peer: mem(pc),
            peer_text: opt(mem(pc).map(|b| b / 1000.0), "KB"),
            goal: Goal::AtMost(8_000.0),
            goal_text: "≤ 8 KB at 10,000 connections",
            unit: "bytes",
            caveat: connect_caveat(cc),
            clean: connect_clean(cc),
        },
        TargetRow {
            name: "Connect rate: authenticated connections per second, each loading its memberships",
            confab: rate(mc),
            confab_text: opt(rate(mc), "/s"),
            peer: rate(mp),
            peer_text: opt(rate(mp), "/s"),
            goal: Goal::AtLeast(5_000.0),
            goal_text: "≥ 5,000/s",
            unit: "/s",
            caveat: members_caveat(mc),
            clean: connect_clean(mc),
        },
        TargetRow {
            name: "Connections up to the open-file limit, chatting",
            confab: ccap.and_then(|(l, _)| num(l, "connect.connected")),
            confab_text: capacity_text(ccap),
            peer: pcap.and_then(|(l, _)| num(l, "connect.connected")),
            peer_text: capacity_text(pcap),
            // Pass/miss is whether it was clean; the figure itself is whatever the limit allows.
            goal: Goal::AtLeast(0.0),
            goal_text: "all of them, no errors",
            unit: "connections",
            caveat: None,
            clean: capacity_pass,
        },
    ]
}

/// For each missed throughput target: the CPU split at the first failing step, which says
/// what the time went to (server, database, generator, others).
fn limits_text(r: &Results) -> Option<String> {
    let mut out = String::new();
    for (label, goal) in [(CONFAB_PG, 10_000.0), (CONFAB_SQLITE, 5_000.0)] {
        let Some(best) = r.sweep(label).and_then(|s| num(s, "sustainable_rate")) else {
            continue;
        };
        if best >= goal {
            continue;
        }
        let steps = r.sweep_steps(label);
        let Some(fail) = steps
            .iter()
            .filter(|s| s.get("passed") == Some(&json!(false)))
            .min_by(|a, b| {
                let rate = |s: &Value| num(s, "rate").unwrap_or(f64::MAX);
                rate(a).total_cmp(&rate(b))
            })
        else {
            continue;
        };
        let watched = at(fail, "watched_cpu_pct")
            .and_then(Value::as_object)
            .and_then(|m| m.get("postgres"))
            .and_then(Value::as_f64);
        let _ = writeln!(
            out,
            "- {label} at {} msgs/s (the lowest failing step): ack p99 {} ms, lost {}; CPU \
             (100 = one core): server {}, PostgreSQL {}, generator {}, whole machine {} of {} \
             (send lag p99 {} ms).",
            opt(num(fail, "rate"), ""),
            opt(num(fail, "ack_ms.p99"), ""),
            opt(num(fail, "lost"), ""),
            opt(num(fail, "server.cpu_pct"), "%"),
            opt(watched, "%"),
            opt(num(fail, "generator.cpu_pct"), "%"),
            opt(num(fail, "machine.cpu_pct"), "%"),
            opt(num(fail, "machine.cores").map(|c| c * 100.0), "%"),
            opt(num(fail, "send_lag_ms.p99"), ""),
        );
    }
    (!out.is_empty()).then(|| {
        format!(
            "Where the throughput fell short, the first failing step shows where the CPU went \
             (a machine near {}% is CPU-bound; a large send lag means the generator fell \
             behind):\n\n{out}\n",
            200
        )
    })
}

/// One row of a per-scenario table: a figure for each system.
fn figure_row(
    md: &mut String,
    name: &str,
    lines: &[Option<&Value>; 3],
    f: &dyn Fn(&Value) -> Option<f64>,
) {
    let vals: Vec<Option<f64>> = lines.iter().map(|l| l.and_then(f)).collect();
    let _ = writeln!(
        md,
        "| {name} | {} | {} | {} | {} |",
        opt(vals[0], ""),
        opt(vals[1], ""),
        opt(vals[2], ""),
        ratio(vals[0], vals[2])
    );
}

fn scenario_tables(r: &Results, md: &mut String) {
    type Fig = (&'static str, fn(&Value) -> Option<f64>);
    let sections: [(&str, &str, &str, Vec<Fig>); 6] = [
        (
            "connect",
            "connect",
            "Users connect (100 in flight) and stay idle; RSS per connection is the server's \
             growth over the run divided by the connections.",
            vec![
                ("connections", |l| num(l, "connected")),
                ("connects/s", |l| num(l, "connects_per_s")),
                ("connect p50 ms", |l| num(l, "connect_ms.p50")),
                ("connect p99 ms", |l| num(l, "connect_ms.p99")),
                ("server RSS per connection, bytes", |l| {
                    num(l, "server.rss_per_conn_bytes")
                }),
                ("alive after idling", |l| num(l, "alive_after_idle")),
            ],
        ),
        (
            "members",
            "connect",
            "Users connect after joining groups of 10 (a prepare round connected them, created \
             the groups and disconnected them), so each connect loads memberships.",
            vec![
                ("connections", |l| num(l, "connected")),
                ("connects/s", |l| num(l, "connects_per_s")),
                ("connect p50 ms", |l| num(l, "connect_ms.p50")),
                ("connect p99 ms", |l| num(l, "connect_ms.p99")),
                ("alive after idling", |l| num(l, "alive_after_idle")),
            ],
        ),
        (
            "chat",
            "chat",
            "A fixed rate for both systems, in groups of 10.",
            vec![
                ("offered msgs/s", |l| num(l, "rate")),
                ("acked msgs/s", |l| num(l, "acked_per_s")),
                ("delivered/s", |l| num(l, "delivered_per_s")),
                ("ack p50 ms", |l| num(l, "ack_ms.p50")),
                ("ack p99 ms", |l| num(l, "ack_ms.p99")),
                ("delivery p99 ms", |l| num(l, "delivery_ms.p99")),
                ("lost", |l| num(l, "lost")),
                ("server CPU %", |l| num(l, "server.cpu_pct")),
                ("server RSS KiB", |l| num(l, "server.rss_kib")),
            ],
        ),
        (
            "fanout",
            "fanout",
            "One group holding every user; latency to the last member.",
            vec![
                ("members", |l| num(l, "group_size")),
                ("msgs/s", |l| num(l, "rate")),
                ("last member p50 ms", |l| num(l, "last_member_ms.p50")),
                ("last member p99 ms", |l| num(l, "last_member_ms.p99")),
                ("delivered/s", |l| num(l, "delivered_per_s")),
                ("lost", |l| num(l, "lost")),
            ],
        ),
        (
            "multinode",
            "multinode",
            "Two server processes sharing PostgreSQL and Redis, users spread over both (confab: \
             `CONFAB_REDIS_URL`; the peer: the Redis adapter). confab-sqlite does not run it.",
            vec![
                ("offered msgs/s", |l| num(l, "rate")),
                ("acked msgs/s", |l| num(l, "acked_per_s")),
                ("ack p99 ms", |l| num(l, "ack_ms.p99")),
                ("delivery p50 ms", |l| num(l, "delivery_ms.p50")),
                ("delivery p99 ms", |l| num(l, "delivery_ms.p99")),
                ("lost", |l| num(l, "lost")),
            ],
        ),
        (
            "capacity",
            "chat",
            "As many users as the server's open-file limit leaves room for, chatting at a low rate.",
            vec![
                ("connections", |l| num(l, "connect.connected")),
                ("offered msgs/s", |l| num(l, "rate")),
                ("ack p99 ms", |l| num(l, "ack_ms.p99")),
                ("lost", |l| num(l, "lost")),
                ("server RSS KiB", |l| num(l, "server.rss_kib")),
            ],
        ),
    ];
    for (title, scenario, about, figures) in sections {
        let label = |system: &str| match title {
            CAPACITY | MEMBERS => format!("{system}/{title}"),
            _ => system.to_owned(),
        };
        let lines = SYSTEMS.map(|s| r.last(&label(s), scenario));
        if lines.iter().all(Option::is_none) {
            continue;
        }
        let _ = writeln!(md, "### {title}\n\n{about}\n");
        md.push_str(
            "| | confab-pg | confab-sqlite | peer | confab-pg/peer |\n|---|---|---|---|---|\n",
        );
        for (name, f) in &figures {
            figure_row(md, name, &lines, f);
        }
        let machine: Vec<String> = lines
            .iter()
            .map(|l| match l {
                Some(l) => {
                    let flags =
                        conditions(l, r.command(str_at(l, "label").unwrap_or(""), scenario));
                    format!(
                        "{}{}",
                        opt(num(l, "machine.cpu_pct"), "%"),
                        if flags.is_empty() { "" } else { " ⚠" }
                    )
                }
                None => "–".into(),
            })
            .collect();
        let _ = writeln!(
            md,
            "| machine CPU (⚠: see Conditions) | {} | {} | {} | |",
            machine[0], machine[1], machine[2]
        );
        md.push('\n');
        if title == "chat" {
            // The sweeps sit with chat: same traffic, rising rates.
            sweep_table(r, md);
        }
    }
}

fn sweep_table(r: &Results, md: &mut String) {
    let summaries = SYSTEMS.map(|s| r.sweep(s));
    if summaries.iter().all(Option::is_none) {
        return;
    }
    md.push_str("### sweep\n\n");
    md.push_str(
        "`chat` at rising rates on the same connections: a step passes when its p99 ack latency \
         is within the bound with nothing lost and no failed send; the sustainable rate is the \
         highest passing step. Each step's p99.9 and maximum stand beside its p99: a step \
         short enough to miss a checkpoint passes on p99 alone (the soak below runs long).\n\n",
    );
    md.push_str("| | confab-pg | confab-sqlite | peer | confab-pg/peer |\n|---|---|---|---|---|\n");
    figure_row(md, "sustainable msgs/s", &summaries, &|l| {
        num(l, "sustainable_rate")
    });
    figure_row(md, "p99 bound ms", &summaries, &|l| num(l, "p99_bound_ms"));
    figure_row(md, "users", &summaries, &|l| num(l, "users"));
    figure_row(md, "steps run", &summaries, &|l| {
        at(l, "steps")
            .and_then(Value::as_array)
            .map(|a| a.len() as f64)
    });
    md.push('\n');
    for s in SYSTEMS {
        let steps = r.sweep_steps(s);
        if steps.is_empty() {
            continue;
        }
        let _ = writeln!(
            md,
            "{s}: {}\n",
            steps
                .iter()
                .map(|st| format!(
                    "{} → p99 {} / p99.9 {} / max {} ms{}",
                    opt(num(st, "rate"), ""),
                    opt(num(st, "ack_ms.p99"), ""),
                    opt(num(st, "ack_ms.p999"), ""),
                    opt(num(st, "ack_ms.max"), ""),
                    if st.get("passed") == Some(&json!(true)) {
                        " ✓"
                    } else {
                        " ✗"
                    }
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}

/// The soak runs' figures; `false` when there are none.
fn soak_table(r: &Results, md: &mut String) -> bool {
    let soaks = SYSTEMS.map(|s| r.last(s, "soak"));
    if soaks.iter().all(Option::is_none) {
        return false;
    }
    md.push_str("### soak\n\n");
    md.push_str(
        "`chat` held at one rate for a long run (1,000 users in groups of 10), measured second by \
         second: what a short step hides, the stalls (a checkpoint, an autovacuum) and memory \
         that keeps growing. Each system runs at its own rate: confab at the targets of the \
         tail-latency issue, the peer at a rate it sustains.\n\n",
    );
    md.push_str("| | confab-pg | confab-sqlite | peer |\n|---|---|---|---|\n");
    let row = |md: &mut String, name: &str, f: &dyn Fn(&Value) -> Option<String>| {
        let cells: Vec<String> = soaks
            .iter()
            .map(|l| l.and_then(f).unwrap_or_else(|| "–".into()))
            .collect();
        let _ = writeln!(md, "| {name} | {} |", cells.join(" | "));
    };
    let n = |path: &'static str| move |l: &Value| num(l, path).map(fmt_num);
    row(md, "rate msgs/s", &n("rate"));
    row(md, "seconds", &n("duration_s"));
    row(md, "acked", &n("acked"));
    row(md, "lost", &n("lost"));
    row(md, "ack p50 ms", &n("ack_ms.p50"));
    row(md, "ack p99 ms", &n("ack_ms.p99"));
    row(md, "ack p99.9 ms", &n("ack_ms.p999"));
    row(md, "ack max ms", &n("ack_ms.max"));
    row(md, "worst second's p99 ms", &|l| {
        worst_second(l, "p99").map(fmt_num)
    });
    row(md, "server RSS MiB, first → last minute", &|l| {
        let mib = |p: &str| num(l, p).map(|k| fmt_num((k / 1024.0).round()));
        Some(format!(
            "{} → {}",
            mib("rss_kib.first_minute_max")?,
            mib("rss_kib.last_minute_max")?
        ))
    });
    md.push('\n');
    true
}

/// The search runs' figures (confab only: the peer has no search).
fn search_table(r: &Results, md: &mut String) {
    let runs = [CONFAB_PG, CONFAB_SQLITE].map(|s| r.last(s, "search"));
    if runs.iter().all(Option::is_none) {
        return;
    }
    md.push_str("### search\n\n");
    md.push_str(
        "A corpus stored through the server as chat stores messages (so indexed on the write \
         path), written in a skewed vocabulary (`w0` is in about half the messages, most words \
         are rare); then one user, a member of 50 of the groups, searches one word at a time: \
         a word drawn uniformly from the vocabulary, then `w0`. Every result is checked to be \
         from the user's conversations and to hold the word. Target: p99 ≤ 50 ms at 1,000,000 \
         messages. The storing rows are the `chat` figures with indexing on.\n\n",
    );
    md.push_str("| | confab-pg | confab-sqlite |\n|---|---|---|\n");
    let row = |md: &mut String, name: &str, f: &dyn Fn(&Value) -> Option<String>| {
        let cells: Vec<String> = runs
            .iter()
            .map(|l| l.and_then(f).unwrap_or_else(|| "–".into()))
            .collect();
        let _ = writeln!(md, "| {name} | {} |", cells.join(" | "));
    };
    let n = |path: &'static str| move |l: &Value| num(l, path).map(fmt_num);
    row(md, "messages", &n("messages"));
    row(md, "groups (of users)", &|l| {
        Some(format!(
            "{} ({})",
            fmt_num(num(l, "groups")?),
            fmt_num(num(l, "users")?)
        ))
    });
    row(md, "storing: rate msgs/s", &n("rate"));
    row(md, "storing: acked/s", &n("acked_per_s"));
    row(md, "storing: lost", &n("lost"));
    row(md, "storing: ack p99 / p99.9 / max ms", &|l| {
        Some(format!(
            "{} / {} / {}",
            fmt_num(num(l, "ack_ms.p99")?),
            fmt_num(num(l, "ack_ms.p999")?),
            fmt_num(num(l, "ack_ms.max")?)
        ))
    });
    for (name, key) in [
        ("a random word", "search_random"),
        ("`w0`", "search_common"),
    ] {
        row(md, &format!("search, {name}: queries"), &move |l| {
            num(l, &format!("{key}.queries")).map(fmt_num)
        });
        row(
            md,
            &format!("search, {name}: p50 / p99 / max ms"),
            &move |l| {
                Some(format!(
                    "{} / {} / {}",
                    fmt_num(num(l, &format!("{key}.ms.p50"))?),
                    fmt_num(num(l, &format!("{key}.ms.p99"))?),
                    fmt_num(num(l, &format!("{key}.ms.max"))?)
                ))
            },
        );
        row(
            md,
            &format!("search, {name}: results per query"),
            &move |l| num(l, &format!("{key}.results_mean")).map(fmt_num),
        );
        row(
            md,
            &format!("search, {name}: failed / wrong results"),
            &move |l| {
                Some(format!(
                    "{} / {}",
                    fmt_num(num(l, &format!("{key}.failed"))?),
                    fmt_num(num(l, &format!("{key}.wrong"))?)
                ))
            },
        );
    }
    md.push('\n');
}

/// The largest per-second `field` of a soak's series.
fn worst_second(line: &Value, field: &str) -> Option<f64> {
    at(line, "series")?
        .as_array()?
        .iter()
        .filter_map(|s| num(s, field))
        .reduce(f64::max)
}

/// Per-second p99 (solid) and max (dotted) over time, per system.
fn soak_chart(r: &Results) -> Option<Chart> {
    let mut series = Vec::new();
    for (i, s) in SYSTEMS.iter().enumerate() {
        let Some(line) = r.last(s, "soak") else {
            continue;
        };
        let Some(points) = at(line, "series").and_then(Value::as_array) else {
            continue;
        };
        let rate = num(line, "rate").map(fmt_num).unwrap_or_default();
        for (pct, dashed) in [("p99", false), ("max", true)] {
            series.push(Series {
                name: format!("{s} {rate}/s {pct}"),
                color: COLORS[i],
                dashed,
                points: points
                    .iter()
                    .filter_map(|p| Some((num(p, "t")?, num(p, pct)?)))
                    .collect(),
            });
        }
    }
    (!series.is_empty()).then(|| Chart {
        title: "Ack latency over time (soak)".into(),
        x_label: "seconds into the run".into(),
        y_label: "latency, ms (log scale)".into(),
        series,
        y_mark: Some((50.0, "50 ms".into())),
    })
}

/// p99 (solid) and p50 (dashed) of `field` against the offered rate, per system.
fn sweep_chart(r: &Results, title: &str, field: &str) -> Option<Chart> {
    let mut series = Vec::new();
    for (i, s) in SYSTEMS.iter().enumerate() {
        let mut steps = r.sweep_steps(s);
        if steps.is_empty() {
            continue;
        }
        steps.sort_by(|a, b| {
            let rate = |v: &Value| num(v, "rate").unwrap_or(0.0);
            rate(a).total_cmp(&rate(b))
        });
        for (pct, dashed) in [("p99", false), ("p50", true)] {
            series.push(Series {
                name: format!("{s} {pct}"),
                color: COLORS[i],
                dashed,
                points: steps
                    .iter()
                    .filter_map(|st| Some((num(st, "rate")?, num(st, &format!("{field}.{pct}"))?)))
                    .collect(),
            });
        }
    }
    if series.is_empty() {
        return None;
    }
    let bound = SYSTEMS
        .iter()
        .find_map(|s| r.sweep(s).and_then(|l| num(l, "p99_bound_ms")));
    Some(Chart {
        title: title.to_owned(),
        x_label: "offered rate, messages/s".into(),
        y_label: "latency, ms (log scale)".into(),
        series,
        y_mark: bound
            .filter(|_| field == "ack_ms")
            .map(|b| (b, format!("p99 bound {} ms", fmt_num(b)))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real lines from bench/results/2026-11-25.jsonl, with meta and command records, a
    /// multinode line relabelled to confab-pg and chat lines relabelled as capacity runs.
    const FIXTURE: &str = include_str!("../testdata/results.jsonl");

    fn results(text: &str) -> Results {
        let mut r = Results {
            sources: vec!["fixture.jsonl".into()],
            ..Results::default()
        };
        r.add(text).unwrap();
        r
    }

    fn render_md(text: &str) -> Report {
        render(
            &results(text),
            &Options {
                out: Path::new("docs/BENCHMARKS.md"),
                plots_dir: Path::new("docs/bench"),
                notes: Some("Profiled with perf.".into()),
            },
        )
    }

    /// The targets table's row that starts with `name`.
    fn row<'a>(md: &'a str, name: &str) -> &'a str {
        md.lines()
            .find(|l| l.starts_with(&format!("| {name}")))
            .unwrap_or_else(|| panic!("no row {name} in\n{md}"))
    }

    #[test]
    fn the_speed_probe_is_shown_when_the_run_recorded_one() {
        let md = render_md(FIXTURE).markdown;
        assert!(
            !md.contains("speed at the start"),
            "the fixture predates the probe"
        );
        let meta = FIXTURE
            .lines()
            .find(|l| l.contains(r#""record":"meta""#))
            .unwrap();
        let mut probed: Value = serde_json::from_str(meta).unwrap();
        probed["machine"]["probe"] = json!({"loopback_rtt_us": 21.5, "cpu_loop_ms": 33.1});
        let text = FIXTURE.replace(meta, &probed.to_string());
        let md = render_md(&text).markdown;
        assert!(
            md.contains("| speed at the start (lower is faster) | loopback TCP round trip 21.5 µs; fixed CPU loop 33.1 ms |"),
            "{md}"
        );
    }

    #[test]
    fn targets_show_both_systems_ratio_and_verdict() {
        let md = render_md(FIXTURE).markdown;
        let row_pg = row(&md, "Sustainable persisted throughput");
        assert!(row_pg.contains("| 2,750 msgs/s (24,"), "{row_pg}");
        assert!(row_pg.contains("| 1,000 msgs/s (8,"), "{row_pg}");
        assert!(row_pg.contains("| 2.75× |"), "{row_pg}");
        assert!(
            row_pg.contains("**miss** by 7,250 msgs/s (28% of the target)"),
            "{row_pg}"
        );
        let sqlite = row(&md, "Sustainable throughput, **SQLite**");
        assert!(
            sqlite.contains("2,500 msgs/s") && sqlite.contains("**miss** by 2,500"),
            "{sqlite}"
        );
        let mem = row(&md, "Idle memory");
        assert!(mem.contains("| 32.1 KB | 13.1 KB | 2.45× |"), "{mem}");
        assert!(mem.contains("(4.0× the target)"), "{mem}");
        let connect = row(&md, "Connect rate");
        assert!(
            connect.contains("3,991 /s") && connect.contains("666 /s"),
            "{connect}"
        );
        let cap = row(&md, "Connections up to the open-file limit");
        assert!(
            cap.contains("19,800 connections of a limit of 20,000, lost 0, errors 0"),
            "{cap}"
        );
        assert!(cap.ends_with("| pass |"), "{cap}");
        // The machine and the commit come from the meta record.
        assert!(md.contains("| CPU | Test CPU @ 2.00GHz |"));
        assert!(md.contains("| RAM | 7.6 GiB |"));
        assert!(md.contains("`1bc67d5abcde`"));
        assert!(md.contains("```sh\nbench/run.sh\n```"));
        assert!(md.contains("target/release/confab-bench sweep --label confab-sqlite"));
        assert!(md.ends_with("## Notes\n\nProfiled with perf.\n"));
    }

    #[test]
    fn a_changed_figure_changes_the_report() {
        let changed = FIXTURE.replace(
            r#""sustainable_rate":2750.0"#,
            r#""sustainable_rate":12000.0"#,
        );
        assert_ne!(changed, FIXTURE);
        let md = render_md(&changed).markdown;
        let row_pg = row(&md, "Sustainable persisted throughput");
        assert!(row_pg.contains("| 12,000 msgs/s"), "{row_pg}");
        assert!(row_pg.contains("| 12.00× |"), "{row_pg}");
        assert!(row_pg.ends_with("| pass |"), "{row_pg}");

        let leaner = FIXTURE.replace(
            r#""rss_per_conn_bytes":32113.0"#,
            r#""rss_per_conn_bytes":2900.0"#,
        );
        let mem = row(&render_md(&leaner).markdown, "Idle memory").to_owned();
        assert!(
            mem.contains("| 2.90 KB |") && mem.ends_with("| pass |"),
            "{mem}"
        );
    }

    #[test]
    fn the_connect_rate_comes_from_the_run_with_memberships() {
        // Without a `members` run the figure is the plain connect's, and says so.
        let md = render_md(FIXTURE).markdown;
        let connect = row(&md, "Connect rate").to_owned();
        assert!(connect.contains("users without memberships"), "{connect}");
        // A members run (the plain line relabelled, with groups and another rate) takes over.
        let plain = FIXTURE
            .lines()
            .find(|l| l.starts_with(r#"{"scenario":"connect","label":"confab-pg""#))
            .unwrap();
        let members = plain
            .replace(
                r#""label":"confab-pg""#,
                r#""label":"confab-pg/members","group_size":10"#,
            )
            .replace(r#""connects_per_s":3990.7"#, r#""connects_per_s":5321.0"#);
        let md = render_md(&format!("{FIXTURE}{members}\n")).markdown;
        let connect = row(&md, "Connect rate").to_owned();
        assert!(connect.contains("5,321 /s"), "{connect}");
        assert!(!connect.contains("without memberships"), "{connect}");
        assert!(connect.ends_with("| pass |"), "{connect}");
        // Idle memory still comes from the plain run.
        assert!(row(&md, "Idle memory").contains("| 32.1 KB |"));
        assert!(md.contains("### members"), "{md}");
    }

    #[test]
    fn a_sweep_where_nothing_passed_is_a_miss() {
        let none = FIXTURE.replace(r#""sustainable_rate":2750.0"#, r#""sustainable_rate":null"#);
        let md = render_md(&none).markdown;
        let row_pg = row(&md, "Sustainable persisted throughput");
        assert!(row_pg.contains("| no step passed |"), "{row_pg}");
        assert!(
            row_pg.contains("**miss** by 10,000 msgs/s (0% of the target)"),
            "{row_pg}"
        );
    }

    #[test]
    fn flags_saturated_and_shared_runs() {
        let md = render_md(FIXTURE).markdown;
        // The confab-pg connect line has "saturated": true; the capacity runs were recorded as
        // starting on a busy machine.
        assert!(
            md.contains("- confab-pg connect: saturated (all cores 96% busy)"),
            "{md}"
        );
        assert!(
            md.contains("confab-pg/capacity chat: ") && md.contains("busy before the start (40%")
        );
        let line = json!({
            "scenario": "chat", "label": "x",
            "server": {"cpu_pct": 50.0}, "generator": {"cpu_pct": 20.0},
            "watched_cpu_pct": {"postgres": 30.0, "cmdline~db": 25.0},
            "machine": {"cores": 2, "cpu_pct": 150.0, "saturated": false}
        });
        assert_eq!(
            conditions(&line, None),
            vec!["shared (50% of a core went to other processes)"]
        );
    }

    #[test]
    fn plots_follow_the_sweep_steps() {
        let report = render_md(FIXTURE);
        let names: Vec<&str> = report.plots.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["sweep-ack-latency.svg", "sweep-delivery-latency.svg"]
        );
        let ack = &report.plots[0].1;
        for s in [
            "confab-pg p99",
            "confab-sqlite p50",
            "peer p99",
            "p99 bound 50",
        ] {
            assert!(ack.contains(s), "{s}");
        }
        assert!(
            report.markdown.contains(
                "![Ack latency against offered rate (sweep)](bench/sweep-ack-latency.svg)"
            )
        );
        // A step's latency moves its point.
        let changed = FIXTURE.replace(r#""p99":3971.071"#, r#""p99":97.0"#);
        assert_ne!(render_md(&changed).plots[0].1, *ack);
    }

    #[test]
    fn a_soak_gets_its_table_and_a_plot_over_time() {
        let soak = |label: &str, rate: u32, spike: f64| {
            format!(
                r#"{{"scenario":"soak","label":"{label}","rate":{rate},"duration_s":600,"acked":1000,"lost":0,"ack_ms":{{"p50":5.0,"p99":20.0,"p999":40.0,"max":{spike}}},"rss_kib":{{"first_minute_max":40960,"last_minute_max":43008}},"series":[{{"t":0,"acked":500,"p50":5.0,"p99":12.0,"max":20.0}},{{"t":1,"acked":500,"p50":6.0,"p99":35.0,"max":{spike}}}]}}"#
            )
        };
        let text = format!(
            "{}\n{}\n",
            soak("confab-pg", 5000, 140.0),
            soak("peer", 400, 90.0)
        );
        let report = render_md(&text);
        let md = &report.markdown;
        assert!(md.contains("### soak"), "{md}");
        assert!(row(md, "worst second's p99 ms").contains("| 35 |"), "{md}");
        assert!(row(md, "ack max ms").contains("140"), "{md}");
        assert!(
            row(md, "server RSS MiB, first → last minute").contains("40 → 42"),
            "{md}"
        );
        let (_, svg) = report
            .plots
            .iter()
            .find(|(n, _)| n == "soak-ack-latency.svg")
            .expect("a soak plot");
        assert!(
            svg.contains("confab-pg 5,000/s p99") && svg.contains("peer 400/s max"),
            "{svg}"
        );
        // A spike moves the plot.
        let changed = text.replace(r#""max":140"#, r#""max":400"#);
        let (_, other) = render_md(&changed)
            .plots
            .into_iter()
            .find(|(n, _)| n == "soak-ack-latency.svg")
            .unwrap();
        assert_ne!(&other, svg);
    }

    #[test]
    fn a_search_gets_its_table() {
        let line = |label: &str, p99: f64| {
            format!(
                r#"{{"scenario":"search","label":"{label}","users":5000,"groups":500,"messages":1000000,"rate":3000,"acked_per_s":2990.5,"lost":0,"ack_ms":{{"p99":20.0,"p999":40.0,"max":60.0}},"search_random":{{"queries":300,"ms":{{"p50":1.2,"p99":{p99},"max":30.0}},"results_mean":14.5,"failed":0,"wrong":0}},"search_common":{{"queries":30,"ms":{{"p50":2.0,"p99":4.0,"max":5.0}},"results_mean":20,"failed":0,"wrong":0}}}}"#
            )
        };
        let md = render_md(&format!(
            "{}\n{}",
            line("confab-pg", 14.5),
            line("confab-sqlite", 7.25)
        ))
        .markdown;
        assert!(md.contains("### search"), "{md}");
        assert!(
            row(&md, "search, a random word: p50 / p99 / max ms")
                .contains("| 1.20 / 14.5 / 30 | 1.20 / 7.25 / 30 |"),
            "{md}"
        );
        assert!(row(&md, "storing: acked/s").contains("2,991"), "{md}");
        // Without search runs, no section.
        assert!(
            !render_md(&line("peer", 1.0))
                .markdown
                .contains("### search")
        );
    }

    #[test]
    fn sweep_steps_are_the_last_sweeps() {
        let mut text = FIXTURE.to_owned();
        text.push_str(r#"{"scenario":"sweep","label":"peer","step":0,"rate":7.0,"passed":true}"#);
        text.push('\n');
        let r = results(&text);
        // A sweep cut short: its steps are the last.
        assert_eq!(r.sweep_steps(PEER).len(), 1);
        assert_eq!(r.sweep_steps(CONFAB_PG).len(), 6);
        assert!(Results::default().sweep_steps(PEER).is_empty());
    }
}
