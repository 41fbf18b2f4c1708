#!/usr/bin/env python3
"""Membership changes in a group of 100,000 (issue 23): what one add costs as the group grows.

Against a running confab with a server key, on a fresh database:

    CONFAB_URL=http://127.0.0.1:3001 CONFAB_SERVER_KEY=... python3 bench/joins.py

creates a group of 1,000 over the server API, grows it to 99,000 in adds of 1,000 (printing every
20th add's time), then adds 300 members one at a time and prints their latency percentiles. Each
add should cost the same at any size (docs/bench/notes.md, "A group of 100,000").
"""
import json
import os
import time
import urllib.request

BASE = os.environ.get("CONFAB_URL", "http://127.0.0.1:3001")
KEY = os.environ["CONFAB_SERVER_KEY"]


def post(path, body):
    request = urllib.request.Request(
        BASE + path,
        data=json.dumps(body).encode(),
        headers={"authorization": "Bearer " + KEY, "content-type": "application/json"},
    )
    return json.load(urllib.request.urlopen(request))


created = post(
    "/api/server/conversations",
    {"kind": "group", "title": "big", "owner_id": "owner", "member_ids": [f"m{i}" for i in range(999)]},
)
cid = created["data"]["conversation"]["id"]
started = time.time()
for k in range(1, 99):
    t = time.time()
    post(f"/api/server/conversations/{cid}/members", {"user_ids": [f"m{k * 1000 + i - 1}" for i in range(1000)]})
    if k % 20 == 1:
        print(f"add {k} of 1,000 took {(time.time() - t) * 1000:.0f} ms", flush=True)
print(f"98 adds of 1,000: {time.time() - started:.2f} s")
latencies = []
for i in range(300):
    t = time.time()
    answer = post(f"/api/server/conversations/{cid}/members", {"user_ids": [f"single{i}"]})
    latencies.append((time.time() - t) * 1000)
latencies.sort()
print("member_count", answer["data"]["conversation"]["member_count"])
print(
    f"300 single adds: p50 {latencies[150]:.1f} ms, p99 {latencies[296]:.1f} ms, max {latencies[-1]:.1f} ms"
)
