#!/usr/bin/env python3
"""Lines a soak's worst seconds up with what the server and the database were doing then.

    bench/stalls.py RESULTS.jsonl LABEL [--server-log FILE]... [--pg-log FILE]
                    [--pressure FILE] [--top N] [--run N]

RESULTS.jsonl holds the soak's result line (its "series": per second acked, p50/p99/max ack ms,
server RSS and CPU, and from confab's /metrics the slowest message inside the server (its
writer's queue, commit and replies), the latest wake of its runtime's probe, the runtime's busy
share and the writers' wait for a core; "started_at_unix_ms": when second 0
began). The server's log is confab's
own (`SERVER_LOG=info,confab::store=debug SERVER_LOGS=DIR bench/measure.sh` keeps it): slow
batches, slow replies, slow commits and SQLite checkpoints. The PostgreSQL log is the cluster's
(`log_checkpoints`, and `log_autovacuum_min_duration = 0` for every vacuum and analyze), where
each line is stamped when the work ended and says how long it took, so it is drawn as an
interval. The pressure file is bench/pressure.py's samples (every 100 ms: the kernel's CPU and
I/O pressure, and how long each process's threads waited for a core).

Prints, for the run: every database event with the seconds it spans; then the N worst seconds
by max, each with the server's slow work in it and the database work overlapping it. Times are
seconds since the run began (the series' t).
"""

import argparse
import datetime as dt
import json
import re
import sys

ANSI = re.compile(r"\x1b\[[0-9;]*m")
SERVER_LINE = re.compile(r"^(\S+Z)\s+(\w+)\s+(\S+?):\s+(.*)$")
PG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) (\w+) \[\d+\] (?:\S+ )?LOG:\s+(.*)$")
FIELD = re.compile(r"(\w+)=(\S+)")


def load_run(path, label, run):
    """The run-th soak result labelled `label` (bench/measure.sh appends each run to the file)."""
    found = [d for d in map(json.loads, open(path))
             if d.get("label") == label and d.get("scenario") == "soak" and "series" in d]
    if not 1 <= run <= len(found):
        sys.exit(f"{len(found)} soak results labelled {label} in {path}: no run {run}")
    return found[run - 1]


def server_events(path, t0):
    """(t, kind, fields) for each slow batch, reply, commit or checkpoint in confab's log."""
    out = []
    for raw in open(path, errors="replace"):
        m = SERVER_LINE.match(ANSI.sub("", raw.strip()))
        if not m:
            continue
        stamp, _level, target, rest = m.groups()
        if "confab::store" not in target:
            continue
        at = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
        fields = dict(FIELD.findall(rest))
        kind = FIELD.sub("", rest).strip()
        out.append((at - t0, kind, fields))
    return out


def pg_events(path, t0, t1):
    """(start, end, text) for checkpoints, vacuums and analyzes ending in [t0, t1 + 60 s]."""
    out = []
    # An entry's first line, with its continuation lines (tab-indented: a vacuum's "elapsed" is
    # on one of them) appended.
    entries = []
    for raw in open(path, errors="replace"):
        if raw.startswith("\t") and entries:
            entries[-1] += " " + raw.strip()
        else:
            entries.append(raw.strip())
    for entry in entries:
        m = PG_LINE.match(entry)
        if not m:
            continue
        stamp, zone, text = m.groups()
        if zone != "UTC":
            continue
        end = dt.datetime.fromisoformat(stamp).replace(tzinfo=dt.timezone.utc).timestamp()
        if not (t0 - 600 <= end <= t1 + 60):
            continue
        took = None
        if text.startswith("checkpoint complete"):
            total = re.search(r"total=([\d.]+) s", text)
            took = float(total.group(1)) if total else 0.0
            sync = re.search(r"sync=([\d.]+) s", text)
            text = f"checkpoint ({total.group(0) if total else '?'}, {sync.group(0) if sync else ''})"
        elif text.startswith("automatic vacuum") or text.startswith("automatic analyze"):
            elapsed = re.search(r"elapsed: ([\d.]+) s", text)
            took = float(elapsed.group(1)) if elapsed else 0.0
            table = re.search(r'table "([^"]+)"', text)
            what = "vacuum" if "vacuum" in text else "analyze"
            text = f"{what} {table.group(1).split('.')[-1] if table else '?'} ({took:.1f} s)"
        else:
            continue
        out.append((end - took - t0, end - t0, text))
    return out


def pressure_per_second(path, t0, seconds):
    """Per second of the run: ms of CPU pressure, I/O pressure (some, full) and per-process run
    queue wait, from bench/pressure.py's cumulative samples."""
    rows = [json.loads(l) for l in open(path)]
    per = [dict() for _ in range(seconds)]
    for a, b in zip(rows, rows[1:]):
        t = int(a["at"] - t0)
        if not 0 <= t < seconds:
            continue
        d = per[t]
        for key in ("cpu_some_us", "io_some_us", "io_full_us"):
            d[key[:-3]] = d.get(key[:-3], 0) + (b[key] - a[key]) / 1000
        for comm, (waited, ran) in b["sched_ns"].items():
            before = a["sched_ns"].get(comm, [0, 0])
            if comm == "others":
                # Processes come and go: only what the ones still there ran counts.
                d["ran others"] = d.get("ran others", 0) + max(0, ran - before[1]) / 1e6
            elif waited >= before[0]:
                d["wait " + comm] = d.get("wait " + comm, 0) + (waited - before[0]) / 1e6
        # The disk: MB written, ms writing, flushes and ms flushing, discards; and which kind of
        # PostgreSQL process had the bytes written (MB).
        da, db = a.get("disk", {}), b.get("disk", {})
        for key, name, scale in (("sectors_written", "disk MB", 512 / 1e6), ("write_ms", "disk write ms", 1),
                                 ("flushes", "flushes", 1), ("flush_ms", "flush ms", 1), ("discards", "discards", 1)):
            if key in da and key in db:
                d[name] = d.get(name, 0) + (db[key] - da[key]) * scale
        for kind, written in b.get("pg_write_bytes", {}).items():
            before = a.get("pg_write_bytes", {}).get(kind, 0)
            d["MB " + kind] = d.get("MB " + kind, 0) + max(0, written - before) / 1e6
        # Clock ticks (1/100 s) of the machine's cores: the host's theft, and packets.
        for kind in ("softirq", "steal"):
            if "cpu_ticks" in b:
                d[kind] = d.get(kind, 0) + (b["cpu_ticks"][kind] - a["cpu_ticks"][kind]) * 10
    return per


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results")
    ap.add_argument("label")
    ap.add_argument("--server-log", action="append", default=[])
    ap.add_argument("--pg-log")
    ap.add_argument("--pressure")
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--run", type=int, default=1, help="which of the label's runs in the file (1: the first)")
    args = ap.parse_args()

    run = load_run(args.results, args.label, args.run)
    t0 = run["started_at_unix_ms"] / 1000
    series = run["series"]
    t1 = t0 + len(series)
    events = [e for f in args.server_log for e in server_events(f, t0)]
    pg = pg_events(args.pg_log, t0, t1) if args.pg_log else []
    pressure = pressure_per_second(args.pressure, t0, len(series)) if args.pressure else None

    ack = run["ack_ms"]
    print(f"{args.label}: {run['acked']} acked at {run['rate']:.0f}/s for {len(series)} s, "
          f"ack p99 {ack['p99']:.1f} / p99.9 {ack['p999']:.1f} / max {ack['max']:.1f} ms")
    kinds = {}
    for _, kind, _ in events:
        kinds[kind] = kinds.get(kind, 0) + 1
    print("server log:", ", ".join(f"{k} x{n}" for k, n in sorted(kinds.items())) or "nothing")
    if pg:
        print("database work during the run:")
        for start, end, text in sorted(pg):
            if end >= 0 and start <= len(series):
                print(f"  {max(start, 0):6.1f} .. {end:6.1f} s  {text}")

    def waits(d):
        return ", ".join(f"{k} {v:.0f}" for k, v in sorted(d.items()))

    if pressure:
        keys = sorted({k for d in pressure for k in d})
        mean = {k: sum(d.get(k, 0) for d in pressure) / len(pressure) for k in keys}
        print("per second on average (ms of waiting):", waits(mean))
    print(f"\nthe {args.top} worst seconds by max ack:")
    print("     t    p50    p99    max  cpu%  slow work in the server that second; database work spanning it")
    for s in sorted(series, key=lambda s: -s["max"])[: args.top]:
        t = s["t"]
        mine = [(k, f) for (at, k, f) in events if t - 1 <= at < t + 1]
        slow = {}
        for kind, fields in mine:
            ms = int(fields.get("ms", 0))
            n, worst = slow.get(kind, (0, 0))
            slow[kind] = (n + 1, max(worst, ms))
        words = [f"{k} x{n} (max {w} ms)" for k, (n, w) in sorted(slow.items())]
        words += [text for start, end, text in pg if start - 1 <= t <= end + 1]
        if "server_send_ms" in s:
            # The slowest message inside the server (writer queue, commit, replies) that second.
            lo, hi = s["server_send_ms"]
            words.append(f"in the server {lo:g}..{hi if hi is not None else 'inf'} ms"
                         f" ({s.get('server_sends_over_50ms', 0)} over 50)")
        if "wake_ms" in s:
            # confab's /metrics: the latest wake that second (bucket bounds), the runtime's busy
            # share, the writers' mean wait for a core.
            lo, hi = s["wake_ms"]
            words.append(f"wake {lo:g}..{hi if hi is not None else 'inf'} ms"
                         f" ({s.get('wakes_over_10ms', 0)} over 10), runtime busy {s.get('runtime_busy_pct', 0):.0f}%"
                         f", writer wait {s.get('writer_wait_ms_mean', 0):.2f} ms"
                         f" ({s.get('writer_long_waits', 0)} over 5)")
        if pressure:
            words.append("waits (ms): " + waits(pressure[t]))
        print(f"  {t:4d} {s['p50']:6.1f} {s['p99']:6.1f} {s['max']:6.1f} {s.get('server_cpu_pct', 0):5.0f}  "
              + ("; ".join(words) or "-"))


if __name__ == "__main__":
    main()
