#!/usr/bin/env python3
"""What a measurement cost the parts around the server, for the capacity model (docs/SCALING.md).

    bench/probe.py snapshot FILE DB_NAME REDIS_URL NODE_URL...   # the counters now, to FILE
    bench/probe.py sample FILE                                    # until killed: peak TCP use
    bench/probe.py diff BEFORE AFTER PEAKS LABEL SCENARIO         # one {"record": "probe"} line

Counters: PostgreSQL's for the run's database (transactions, rows written, WAL bytes, size),
Redis's (commands, PUBLISH calls, pub/sub messages sent to subscribers, CPU), each confab node's
bus counters from /metrics, and the kernel's TCP memory (/proc/net/sockstat: pages for every TCP
socket on the machine, both ends of a loopback connection). bench/measure.sh runs it around each
generator run when PROBES=1.
"""
import json, re, subprocess, sys, time, urllib.request


def pg(db):
    if not db:
        return None
    q = ("SELECT xact_commit, tup_inserted, tup_updated, tup_deleted, pg_database_size(current_database()),"
         " pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0') FROM pg_stat_database WHERE datname = current_database()")
    out = subprocess.run(["psql", "-qAtX", "-F", " ", f"postgres://root@127.0.0.1:5432/{db}", "-c", q],
                         capture_output=True, text=True, check=True).stdout.split()
    keys = ["commits", "rows_inserted", "rows_updated", "rows_deleted", "db_bytes", "wal_bytes"]
    return dict(zip(keys, (int(float(x)) for x in out)))


def redis(url):
    if not url:
        return None
    host, port = re.match(r"redis://([^:/]+):(\d+)", url).groups()
    info = subprocess.run(["redis-cli", "-h", host, "-p", port, "INFO", "all"],
                          capture_output=True, text=True, check=True).stdout
    fields = dict(l.split(":", 1) for l in info.splitlines() if ":" in l and not l.startswith("#"))
    calls = lambda cmd: int(re.search(r"calls=(\d+)", fields.get(f"cmdstat_{cmd}", "calls=0")).group(1))
    return {
        "commands": int(fields["total_commands_processed"]),
        "publish_calls": calls("publish") + calls("spublish"),
        "cpu_s": float(fields["used_cpu_sys"]) + float(fields["used_cpu_user"]),
        "net_in_bytes": int(fields["total_net_input_bytes"]),
        "net_out_bytes": int(fields["total_net_output_bytes"]),
    }


def bus(urls):
    total = {"published": 0, "received": 0}
    for url in urls:
        try:
            text = urllib.request.urlopen(f"{url}/metrics", timeout=5).read().decode()
        except OSError:
            return None
        for key, metric in [("published", "confab_bus_published_total"), ("received", "confab_bus_received_total")]:
            total[key] += sum(int(float(v)) for v in re.findall(rf"^{metric}(?:{{[^}}]*}})? (\S+)$", text, re.M))
    return total


# Kernel objects each socket holds (beside buffers, which "mem" counts): the socket itself, its
# inode, its open file, its epoll entry. Readable as root.
SLABS = ("TCP", "sock_inode_cache", "filp", "eventpoll_epi")


def tcp():
    text = open("/proc/net/sockstat").read()
    m = re.search(r"TCP: inuse (\d+) .* mem (\d+)", text)
    out = {"inuse": int(m.group(1)), "mem_pages": int(m.group(2)), "slab_bytes": 0}
    try:
        for line in open("/proc/slabinfo"):
            f = line.split()
            if f and f[0] in SLABS:
                out["slab_bytes"] += int(f[1]) * int(f[3])
    except OSError:
        pass
    return out


def main():
    cmd = sys.argv[1]
    if cmd == "snapshot":
        path, db, redis_url, *urls = sys.argv[2:]
        snap = {"pg": pg(db), "redis": redis(redis_url), "bus": bus(urls) if urls else None, "tcp": tcp(),
                "t": time.time()}
        json.dump(snap, open(path, "w"))
    elif cmd == "sample":
        path = sys.argv[2]
        peak = tcp()
        while True:
            now = tcp()
            if now["inuse"] > peak["inuse"]:
                peak = now
            json.dump(peak, open(path, "w"))
            time.sleep(0.5)
    elif cmd == "diff":
        before, after, peaks, label, scenario = sys.argv[2:]
        a, b = json.load(open(before)), json.load(open(after))
        try:
            peak = json.load(open(peaks))
        except (OSError, ValueError):
            peak = None
        line = {"record": "probe", "label": label, "scenario": scenario, "seconds": round(b["t"] - a["t"], 1)}
        for part in ["pg", "redis", "bus"]:
            if a[part] is not None and b[part] is not None:
                line[part] = {k: round(b[part][k] - a[part][k], 3) for k in a[part]}
        if part := peak:
            line["tcp_peak"] = {k: part[k] - a["tcp"].get(k, 0) for k in part}
        print(json.dumps(line))


main()
