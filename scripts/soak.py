#!/usr/bin/env python3
"""Memory soak on the devnet: does a busy node's memory plateau?

Starts `yrd devnet` (four provinces, one process) in a fresh directory, then for SECS seconds:
Shanghai publishes a new 1,000-record version of `sh-enterprise-licence` every INTERVAL seconds
(the devnet's three other members subscribe to it, so each version is fetched three times), and
CLIENTS threads call the four nodes' admin API without pause (status, peers, catalogue, transfers,
provenance pages). Every 5 s it samples the devnet process's resident memory (VmRSS).

At the end it waits for every subscriber to hold Shanghai's last version, and prints (and with
--json-out writes) the RSS curve, the calls and errors, and the versions published and delivered.
The figure that matters is the slope after warm-up: a node whose memory is bounded shows a flat
line; a leak or an unbounded cache shows a steady climb.

Usage: scripts/soak.py YRD [--secs 300] [--interval 2] [--clients 8] [--cache-mib N]
       [--wrap "heaptrack -o FILE"] [--json-out FILE]
--cache-mib sets `[store] cache_mib` on every node before the soak (e.g. 1024, sled's own
default, to see the difference the bound makes).
--interval larger than --secs publishes one version only (growth from API calls alone);
--clients 0 calls nothing (growth from versions alone).
--wrap runs the devnet under a command (a heap profiler); RSS is then sampled from the `yrd`
process under it, yrd's malloc settings (MALLOC_ARENA_MAX=2, MALLOC_MMAP_THRESHOLD_=131072) are
set beforehand so that it does not re-execute itself,
and the devnet is killed at the end (SIGKILL), so the profile's "leaked" memory is what was live.
"""

import argparse
import http.client
import json
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib

NODES = ["shanghai", "jiangsu", "zhejiang", "anhui"]
DATASET = "sh-enterprise-licence"
PATHS = [
    "/api/v1/node",
    "/api/v1/peers",
    "/api/v1/catalogue/network",
    "/api/v1/transfers",
    "/api/v1/provenance?limit=20",
    "/api/v1/subscriptions",
]


def rss_kib(pid, key="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def sample(pid, t):
    """(seconds, RSS, of which anonymous memory, of which file pages), in KiB."""
    return (t, rss_kib(pid), rss_kib(pid, "RssAnon"), rss_kib(pid, "RssFile"))


def yrd_pid(proc, yrd):
    """The `yrd devnet` process: `proc` itself, or (under --wrap) its descendant running YRD."""
    todo = [proc.pid]
    while todo:
        pid = todo.pop()
        try:
            if os.path.realpath(f"/proc/{pid}/exe") == os.path.realpath(yrd):
                return pid
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                todo.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return None


def start_devnet(yrd, root, wrap=None):
    log = open(os.path.join(root, "devnet.log"), "ab")
    env = dict(os.environ)
    if wrap:
        env.setdefault("MALLOC_ARENA_MAX", "2")
        env.setdefault("MALLOC_MMAP_THRESHOLD_", "131072")
    cmd = shlex.split(wrap or "") + [yrd, "devnet", "--dir", root]
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, env=env)
    # Ready when the last subscriber holds a subscription (the devnet's last setup step).
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"yrd devnet exited with {proc.returncode}; see {root}/devnet.log")
        if subscribed(yrd, root, "anhui"):
            proc.yrd_pid = yrd_pid(proc, yrd) or proc.pid
            return proc
        time.sleep(0.5)
    proc.kill()
    sys.exit(f"devnet not ready within 180 s; see {root}/devnet.log")


def stop_devnet(proc, sig=signal.SIGTERM):
    # Under --wrap the signal goes to yrd itself; the wrapper then finishes its output.
    try:
        os.kill(proc.yrd_pid, sig)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def cli(yrd, root, node, *args):
    return subprocess.run([yrd, "--data-dir", os.path.join(root, node), *args],
                          capture_output=True, text=True, timeout=120)


def subscribed(yrd, root, node):
    out = cli(yrd, root, node, "--json", "subscriptions")
    if out.returncode != 0:
        return None
    for s in json.loads(out.stdout or "[]"):
        if s.get("dataset") == DATASET:
            return s
    return None


def set_cache(root, mib):
    for node in NODES:
        path = os.path.join(root, node, "yrd.toml")
        text = open(path).read()
        if re.search(r"(?m)^\[store\]", text):
            text = re.sub(r"(?m)^cache_mib = \d+", f"cache_mib = {mib}", text)
        else:
            text += f"\n[store]\ncache_mib = {mib}\n"
        open(path, "w").write(text)


def api_of(root, node):
    with open(os.path.join(root, node, "yrd.toml"), "rb") as f:
        listen = tomllib.load(f)["api"]["listen"]
    token = open(os.path.join(root, node, "api.token")).read().strip()
    host, port = listen.rsplit(":", 1)
    return host, int(port), token


class Clients:
    def __init__(self, apis, n):
        self.apis = apis
        self.calls = 0
        self.errors = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(n)]

    def run(self, i):
        rng = random.Random(i)
        conns = {}
        while not self.stop.is_set():
            host, port, token = rng.choice(self.apis)
            path = rng.choice(PATHS)
            try:
                conn = conns.get(port) or http.client.HTTPConnection(host, port, timeout=30)
                conns[port] = conn
                conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
                resp = conn.getresponse()
                resp.read()
                ok = 200 <= resp.status < 300
                err = None if ok else f"{path}: HTTP {resp.status}"
            except (OSError, http.client.HTTPException) as e:
                conns.pop(port, None)
                err = f"{path}: {e}"
            with self.lock:
                self.calls += 1
                if err and len(self.errors) < 1000:
                    self.errors.append(err)


def publish_loop(yrd, root, secs, interval, stop, result):
    sample = os.path.join(root, "shanghai", "samples", f"{DATASET}.jsonl")
    records = [json.loads(line) for line in open(sample)]
    work = os.path.join(root, "soak.jsonl")
    end = time.time() + secs
    n = 0
    while time.time() < end and not stop.is_set():
        t0 = time.time()
        n += 1
        # A new version: one record's business scope names the round, the rest as before.
        rec = records[n % len(records)]
        rec["business_scope"] = f"soak round {n}"
        with open(work, "w") as f:
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        out = cli(yrd, root, "shanghai", "publish", DATASET, work)
        if out.returncode == 0:
            m = re.search(r" v(\d+):", out.stdout)
            if m:
                result["last_version"] = int(m.group(1))
            result["published"] += 1
        else:
            result["publish_errors"].append(out.stderr.strip()[:300])
        stop.wait(max(0.0, min(interval - (time.time() - t0), end - time.time())))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("yrd")
    ap.add_argument("--secs", type=int, default=300)
    ap.add_argument("--interval", type=float, default=2.0)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--cache-mib", type=int)
    ap.add_argument("--wrap", help='run the devnet under this command, e.g. "heaptrack -o /tmp/h"')
    ap.add_argument("--json-out")
    a = ap.parse_args()
    yrd = os.path.abspath(a.yrd)
    root = tempfile.mkdtemp(prefix="yrd-soak.")
    proc = start_devnet(yrd, root)
    if a.cache_mib or a.wrap:
        stop_devnet(proc)
        if a.cache_mib:
            set_cache(root, a.cache_mib)
        proc = start_devnet(yrd, root, a.wrap)
    apis = [api_of(root, n) for n in NODES]
    clients = Clients(apis, a.clients)
    result = {"published": 0, "publish_errors": [], "last_version": None}
    stop = threading.Event()
    publisher = threading.Thread(target=publish_loop, args=(yrd, root, a.secs, a.interval, stop, result))
    samples = []
    t0 = time.time()
    samples.append(sample(proc.yrd_pid, 0.0))
    for t in clients.threads:
        t.start()
    publisher.start()
    try:
        while publisher.is_alive():
            publisher.join(timeout=5)
            samples.append(sample(proc.yrd_pid, round(time.time() - t0, 1)))
            mib, anon = samples[-1][1] / 1024, samples[-1][2] / 1024
            print(f"{samples[-1][0]:7.1f} s  RSS {mib:6.1f} MiB (anon {anon:6.1f})  calls {clients.calls}  "
                  f"errors {len(clients.errors)}  published {result['published']}", flush=True)
    finally:
        stop.set()
        clients.stop.set()
        for t in clients.threads:
            t.join(timeout=35)
    # Every subscriber must end with the last version published.
    last = result["last_version"]
    delivered = {}
    deadline = time.time() + 120
    for node in NODES[1:]:
        while True:
            s = subscribed(yrd, root, node) or {}
            delivered[node] = s.get("fetched_version")
            if delivered[node] == last or time.time() > deadline:
                break
            time.sleep(1)
    # Killed under --wrap, so that a heap profiler's "leaked" memory is what was live at the end
    # (an orderly stop frees it).
    stop_devnet(proc, signal.SIGKILL if a.wrap else signal.SIGTERM)
    calls = clients.calls
    # Slope over the second half of the run (warm-up excluded): MiB per minute.
    half = [s for s in samples if s[0] >= a.secs / 2]
    slope = None
    if len(half) >= 2 and half[-1][0] > half[0][0]:
        slope = (half[-1][1] - half[0][1]) / 1024 / ((half[-1][0] - half[0][0]) / 60)
    report = {
        "secs": a.secs,
        "interval": a.interval,
        "clients": a.clients,
        "cache_mib": a.cache_mib,
        "wrap": a.wrap,
        "calls": calls,
        "calls_per_sec": round(calls / a.secs, 1),
        "errors": len(clients.errors),
        "first_errors": clients.errors[:5],
        "published": result["published"],
        "publish_errors": result["publish_errors"][:5],
        "last_version": last,
        "delivered": delivered,
        "rss_mib": [(s[0], round(s[1] / 1024, 1), round(s[2] / 1024, 1), round(s[3] / 1024, 1)) for s in samples],
        "rss_start_mib": round(samples[0][1] / 1024, 1),
        "rss_max_mib": round(max(s[1] for s in samples) / 1024, 1),
        "rss_end_mib": round(samples[-1][1] / 1024, 1),
        "slope_second_half_mib_per_min": None if slope is None else round(slope, 2),
        "dir": root,
    }
    print(json.dumps({k: v for k, v in report.items() if k != "rss_mib"}, indent=2, ensure_ascii=False))
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(report, f, indent=2, ensure_ascii=False)
    ok = not clients.errors and not result["publish_errors"] and all(v == last for v in delivered.values())
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
