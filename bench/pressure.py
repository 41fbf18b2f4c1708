#!/usr/bin/env python3
"""Samples what the kernel says about waiting, every 100 ms, for lining a soak's stalls up.

    bench/pressure.py OUT.jsonl [--every 0.1] [--comm confab --comm postgres ...]

Each line: the wall-clock time, the machine's pressure stall totals (/proc/pressure: cpu
"some", io "some" and "full", in microseconds since boot), its CPU time by kind (/proc/stat:
user, system, softirq, steal (a virtual machine's core taken by the host) and the rest, in
clock ticks) and, per process name (`comm`), the total time its threads have waited on a run
queue (run_delay in /proc/PID/task/TID/schedstat, nanoseconds) and spent running, with every
other process together as "others" (the run time of each one's main thread only: reading every
thread of every process each 100 ms would cost more than it tells); the disk's counters (/proc/diskstats:
sectors written, ms spent writing, flushes (each fsync of a log ends in one) and ms spent on
them, discards); and the bytes each kind of PostgreSQL process (from its title: checkpointer,
walwriter, background writer, autovacuum worker, a backend) has had written to the disk.
Differences between lines say, per 100 ms,
whether tasks were waiting for a core (CPU contention, and whose), for the disk (io), or
neither. Runs until killed.
`bench/stalls.py --pressure OUT.jsonl` prints them beside the worst seconds.
"""

import argparse
import json
import os
import time


def psi(kind):
    out = {}
    try:
        for line in open(f"/proc/pressure/{kind}"):
            name, *fields = line.split()
            out[name] = int(dict(f.split("=") for f in fields)["total"])
    except OSError:
        pass
    return out


CPU_FIELDS = ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"]


def cpu_ticks():
    first = open("/proc/stat").readline().split()[1:]
    return dict(zip(CPU_FIELDS, map(int, first)))


def sched(comms):
    """Per comm: [run_delay ns, on-CPU ns] summed over every thread of every matching process;
    "others": [0, on-CPU ns] of every other process's main thread (/proc/PID/schedstat is the
    first thread's alone)."""
    totals = {c: [0, 0] for c in comms}
    totals["others"] = [0, 0]
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            comm = open(f"/proc/{pid}/comm").read().strip()
        except OSError:
            continue
        if comm not in totals or comm == "others":
            try:
                ran = open(f"/proc/{pid}/schedstat").read().split()[0]
                totals["others"][1] += int(ran)
            except (OSError, ValueError, IndexError):
                pass
            continue
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                ran, waited, _ = open(f"/proc/{pid}/task/{tid}/schedstat").read().split()
            except (OSError, ValueError):
                continue
            totals[comm][0] += int(waited)
            totals[comm][1] += int(ran)
    return totals


def disk(device):
    """The counters of /proc/diskstats for `device` that say what the disk was busy with."""
    for line in open("/proc/diskstats"):
        f = line.split()
        if f[2] == device:
            n = list(map(int, f[3:]))
            out = {"writes": n[4], "sectors_written": n[6], "write_ms": n[7], "in_flight": n[8]}
            if len(n) >= 15:
                out.update(discards=n[11], discard_ms=n[14])
            if len(n) >= 17:
                out.update(flushes=n[15], flush_ms=n[16])
            return out
    return {}


def pg_writes():
    """Bytes written to storage, per kind of PostgreSQL process (from its process title)."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if open(f"/proc/{pid}/comm").read().strip() != "postgres":
                continue
            title = open(f"/proc/{pid}/cmdline").read().replace("\0", " ")
            io = dict(l.split(": ") for l in open(f"/proc/{pid}/io").read().splitlines())
        except (OSError, ValueError):
            continue
        kind = "backend"
        for k in ("checkpointer", "walwriter", "background writer", "autovacuum", "logger", "startup"):
            if k in title:
                kind = k
        if "postgres:" not in title:
            kind = "postmaster"
        out[kind] = out.get(kind, 0) + int(io.get("write_bytes", 0))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--every", type=float, default=0.1)
    ap.add_argument("--comm", action="append", default=None)
    ap.add_argument("--disk", default="vda")
    args = ap.parse_args()
    comms = args.comm or ["confab", "postgres", "confab-bench", "node"]
    with open(args.out, "w") as out:
        next_at = time.monotonic()
        while True:
            cpu, io = psi("cpu"), psi("io")
            line = {
                "at": time.time(),
                "cpu_some_us": cpu.get("some", 0),
                "io_some_us": io.get("some", 0),
                "io_full_us": io.get("full", 0),
                "cpu_ticks": cpu_ticks(),
                "disk": disk(args.disk),
                "pg_write_bytes": pg_writes(),
                "sched_ns": sched(comms),
            }
            out.write(json.dumps(line) + "\n")
            out.flush()
            next_at += args.every
            time.sleep(max(0.0, next_at - time.monotonic()))


if __name__ == "__main__":
    main()
