#!/usr/bin/env python3
"""Query calls end to end between two `yrd run` processes on loopback, against a plain HTTPS floor.

One run measures, on the same machine and with the same client (`bench-query load`: one
keep-alive connection per caller, each call timed to the end of its answer):

* node A (310000) publishes an N-record `enterprise-licence` dataset (default 1,000,000; the
  project's sample records, JSON Lines) as a conditional offer with query key `uscc` (the key
  index is built at publish); node B (320000) is granted `lookup` of six fields (one of them, the
  legal representative's ID number, leaves masked);
* keyed lookups by B's information system, `POST /api/v1/query` on B's API (plain HTTP on
  loopback, the admin token): each call is B checking the grant, sending the query over
  libp2p (TCP + Noise + yamux) to A, A checking it, reading the record through the key index,
  projecting and masking it, signing the answer, recording `query-answered`, and B checking the
  answer and recording `query-sent` (each record acknowledged after its group commit's fsync);
  p50/p99 with 1 caller (calls one after another) and p50/p99 and calls/s with C callers
  (default 64) for S seconds; A's peak RSS (VmHWM, reset before the calls) over those calls;
* the floor: `bench-query serve-tls`, a plain HTTPS server (rustls, TLS 1.3, rcgen's self-signed
  certificate, HTTP/1.1 keep-alive) answering every POST with a JSON body as long as a real
  answer, called the same way.

Usage: bench_query.py YRD_BINARY [--bench-query PATH] [--records 1000000] [--keys 10000]
           [--latency-calls 2000] [--concurrency 64] [--secs 20] [--json-out PATH]
           [--tmp-dir DIR] [--keep]
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_transfer as bt  # noqa: E402  (its node, process and /proc helpers)

DATASET = "bench-q"
FIELDS = ["uscc", "enterprise_name", "enterprise_type", "status", "registered_capital",
          "legal_representative_id_number"]
PURPOSE = "跨省通办企业资格核验（基准测试）"
BASIS = "《优化营商环境条例》第三十七条"


def load(bq, out, url, body, keys, concurrency, calls=None, secs=None, ca=None, token=None,
         first_key=0):
    args = [bq, "load", "--url", url, "--body", body, "--keys", keys,
            "--concurrency", str(concurrency), "--first-key", str(first_key), "--json-out", out]
    args += ["--secs", str(secs)] if secs else ["--calls", str(calls)]
    if ca:
        args += ["--ca", ca]
    if token:
        args += ["--token", token]
    r = subprocess.run(args, capture_output=True, text=True, timeout=3600)
    bt.log(f"  {r.stdout.strip()}")
    if r.returncode != 0:
        raise bt.BenchError(f"bench-query load failed ({r.returncode}):\n{r.stdout}{r.stderr}")
    with open(out) as f:
        return json.load(f)


def retry(what, fn, timeout=60):
    t0 = time.monotonic()
    while True:
        try:
            return fn()
        except (OSError, urllib.error.URLError, KeyError, ValueError) as e:
            if time.monotonic() - t0 > timeout:
                raise bt.BenchError(f"{what}: {e}")
            time.sleep(0.1)


def counters(node, *names):
    """The named counters of `node`'s /metrics (None for one it does not export)."""
    req = urllib.request.Request(f"http://127.0.0.1:{node.api_port}/metrics",
                                 headers={"Authorization": f"Bearer {node.token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        text = r.read().decode()
    found = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in names:
            found[parts[0]] = int(parts[1])
    return [found.get(n) for n in names]


def cpu_s(pid):
    """User + system CPU seconds of `pid` so far (/proc/PID/stat)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def must(value, what):
    """`value`, or ValueError naming `what` (for `retry`) if it is false."""
    if not value:
        raise ValueError(what)
    return value


def figures(r):
    return {k: r[k] for k in ("calls", "calls_per_s", "p50_ms", "p99_ms", "mean_ms", "max_ms")}


def run(args):
    yrd = os.path.abspath(args.yrd)
    bq = os.path.abspath(args.bench_query or os.path.join(os.path.dirname(yrd), "bench-query"))
    for exe in (yrd, bq):
        if not os.access(exe, os.X_OK):
            raise bt.BenchError(f"{exe} is not an executable")
    tmp = tempfile.mkdtemp(prefix="yrd-bench-query-", dir=args.tmp_dir)
    bt.log(f"work dir {tmp}")
    res = {"records": args.records, "concurrency": args.concurrency, "secs": args.secs,
           "yrd": yrd, "version": subprocess.run([yrd, "--version"], capture_output=True,
                                                 text=True).stdout.strip(),
           "cores": os.cpu_count(), "loadavg_start": os.getloadavg()}
    floor = None
    try:
        data, keys = os.path.join(tmp, "records.jsonl"), os.path.join(tmp, "keys.txt")
        t0 = time.perf_counter()
        subprocess.run([bq, "gen", "--records", str(args.records), "--out", data,
                        "--keys-out", keys, "--keys", str(args.keys)], check=True, timeout=7200,
                       capture_output=True)
        res["bytes"] = os.path.getsize(data)
        bt.log(f"dataset: {args.records} records, {res['bytes']} B, "
               f"{time.perf_counter() - t0:.1f} s")

        a = bt.Node(yrd, tmp, "A", "310000")
        a.init([])
        b = bt.Node(yrd, tmp, "B", "320000")
        b.init(["--member", a.peer_id])
        port = bt.free_port()
        a_addr = f"/ip4/127.0.0.1/tcp/{port}"
        a.configure([a_addr], [], [(b.peer_id, "bench-B")], "noise")
        b.configure(["/ip4/127.0.0.1/tcp/0"], [f"{a_addr}/p2p/{a.peer_id}"],
                    [(a.peer_id, "bench-A")], "noise")
        a.start(os.path.join(tmp, "A.log"))
        b.start(os.path.join(tmp, "B.log"))
        a.cli("schema", "publish", bt.SCHEMA, "--id", "enterprise-licence", "--version", "1.0.0")
        offer = {"identifier": DATASET, "title": "企业营业执照（核验基准）", "description": DATASET,
                 "media_type": "application/jsonl", "resource_code": "310000-BENCHQ-00001",
                 "share_type": "conditional", "share_conditions": "履职需要，经审批",
                 "share_method": "interface", "update_cycle": "daily",
                 "schema_id": "enterprise-licence", "schema_version": "1.0.0",
                 "query_keys": ["uscc"]}
        p = os.path.join(tmp, "offer.json")
        with open(p, "w") as f:
            json.dump(offer, f, ensure_ascii=False)
        a.cli("catalog", "add", p)
        sampler = bt.RssSampler([a.proc.pid])
        t0 = time.perf_counter()
        a.cli("publish", DATASET, data, "--format", "jsonl", timeout=7200)
        res["publish_s"] = round(time.perf_counter() - t0, 2)
        res["publish_rss_mib"] = round(sampler.finish()[a.proc.pid], 1)
        bt.log(f"publish (validate, store, key index): {res['publish_s']} s, "
               f"peak RSS {res['publish_rss_mib']} MiB")

        b.wait_offer(DATASET, 1, 120)
        asked = b.api("POST", "/api/v1/requests", {"target": f"310000/{DATASET}",
                                                   "purpose": PURPOSE, "basis": BASIS,
                                                   "fields": FIELDS})
        grant = retry("approve", lambda: a.api(
            "POST", f"/api/v1/requests/{asked['id']}/approve", {"modes": ["lookup"]}))
        gid = grant["document"]["id"]
        retry("the grant at B", lambda: must(
            b.api("GET", f"/api/v1/grants/{gid}")["state"] == "valid", "not yet valid"))
        body = json.dumps({"target": f"310000/{DATASET}", "mode": "lookup",
                           "key": [{"field": "uscc", "value": "{KEY}"}]}, ensure_ascii=False)
        with open(keys) as f:
            first = f.readline().strip()
        sample = b.api("POST", "/api/v1/query", json.loads(body.replace("{KEY}", first)))
        if sample["answer"]["document"]["record_count"] != 1:
            raise bt.BenchError(f"the sample lookup found no record: {sample}")
        res["answer_bytes"] = len(json.dumps(sample, ensure_ascii=False).encode())
        url = f"http://127.0.0.1:{b.api_port}/api/v1/query"
        out = os.path.join(tmp, "load.json")
        bt.log("yrd: warm-up (200 calls)")
        load(bq, out, url, body, keys, 1, calls=200, token=b.token)
        bt.log(f"yrd: {args.latency_calls} calls one after another")
        res["yrd_1"] = figures(load(bq, out, url, body, keys, 1, calls=args.latency_calls,
                                    token=b.token, first_key=200))
        bt.reset_hwm(a.proc.pid)
        rss_before = bt.status_kb(a.proc.pid, "VmRSS") / 1024
        bt.log(f"yrd: {args.concurrency} callers for {args.secs} s")
        cpu0 = (cpu_s(a.proc.pid), cpu_s(b.proc.pid))
        batch_names = ("yrd_queries_sent_total", "yrd_query_batches_sent_total")
        sent0 = counters(b, *batch_names)
        many = figures(load(
            bq, out, url, body, keys, args.concurrency, secs=args.secs, token=b.token,
            first_key=200 + args.latency_calls))
        calls = max(many["calls"], 1)
        many["provider_cpu_ms_per_call"] = round((cpu_s(a.proc.pid) - cpu0[0]) * 1000 / calls, 3)
        many["caller_cpu_ms_per_call"] = round((cpu_s(b.proc.pid) - cpu0[1]) * 1000 / calls, 3)
        sent1 = counters(b, *batch_names)
        if None not in sent0 + sent1 and sent1[1] > sent0[1]:
            many["queries_per_batch"] = round((sent1[0] - sent0[0]) / (sent1[1] - sent0[1]), 2)
            bt.log(f"queries per batch (B to A): {many['queries_per_batch']}")
        res[f"yrd_{args.concurrency}"] = many
        res["loadavg_after_yrd_calls"] = os.getloadavg()
        bt.log(f"CPU per call: provider {many['provider_cpu_ms_per_call']} ms, caller "
               f"{many['caller_cpu_ms_per_call']} ms")
        res["provider_rss_before_mib"] = round(rss_before, 1)
        res["provider_peak_rss_mib"] = round(bt.status_kb(a.proc.pid, "VmHWM") / 1024, 1)
        res["caller_peak_rss_mib"] = round(bt.status_kb(b.proc.pid, "VmHWM") / 1024, 1)
        bt.log(f"provider RSS {res['provider_rss_before_mib']} MiB before the calls, peak "
               f"{res['provider_peak_rss_mib']} MiB")
        b.stop()
        a.stop()

        port_file, cert = os.path.join(tmp, "floor.port"), os.path.join(tmp, "floor.der")
        floor = bt.spawn([bq, "serve-tls", "--cert-out", cert, "--port-out", port_file,
                          "--answer-bytes", str(res["answer_bytes"])],
                         os.path.join(tmp, "floor.log"))
        retry("the floor server", lambda: must(open(port_file).read(), "no port yet"),
              timeout=30)
        furl = f"https://127.0.0.1:{open(port_file).read().strip()}/api/v1/query"
        bt.log("floor (HTTPS): warm-up, then the same calls")
        load(bq, out, furl, body, keys, 1, calls=200, ca=cert)
        res["https_1"] = figures(load(bq, out, furl, body, keys, 1, calls=args.latency_calls,
                                      ca=cert))
        res[f"https_{args.concurrency}"] = figures(load(
            bq, out, furl, body, keys, args.concurrency, secs=args.secs, ca=cert))
        res["loadavg_end"] = os.getloadavg()
        return res
    finally:
        if floor is not None:
            bt.stop(floor)
        bt.stop_all()
        if args.keep:
            bt.log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def report(res, c):
    rows = [("yrd POST /api/v1/query, 1 caller", res["yrd_1"]),
            (f"yrd POST /api/v1/query, {c} callers", res[f"yrd_{c}"]),
            ("plain HTTPS round trip, 1 caller", res["https_1"]),
            (f"plain HTTPS round trip, {c} callers", res[f"https_{c}"])]
    print(f"{'':42} {'p50 ms':>8} {'p99 ms':>8} {'calls/s':>9}")
    for name, r in rows:
        print(f"{name:42} {r['p50_ms']:8.3f} {r['p99_ms']:8.3f} {r['calls_per_s']:9.0f}")
    m = res[f"yrd_{c}"]
    print(f"CPU per call ({c} callers): provider {m['provider_cpu_ms_per_call']} ms, caller "
          f"{m['caller_cpu_ms_per_call']} ms; queries per batch: "
          f"{m.get('queries_per_batch', 'n/a')}")
    print(f"provider peak RSS over the {c}-caller run: {res['provider_peak_rss_mib']} MiB "
          f"(before: {res['provider_rss_before_mib']} MiB; publish: {res['publish_rss_mib']} MiB); "
          f"{res['records']} records, {res['bytes']} B; answer {res['answer_bytes']} B; "
          f"load average {res['loadavg_start'][0]:.2f} at start, {res['loadavg_end'][0]:.2f} "
          f"at end")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("yrd")
    ap.add_argument("--bench-query")
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--keys", type=int, default=10_000)
    ap.add_argument("--latency-calls", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--secs", type=float, default=20)
    ap.add_argument("--json-out")
    ap.add_argument("--tmp-dir")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, bt._on_signal)
    try:
        res = run(args)
    except bt.BenchError as e:
        bt.log(f"FAILED: {e}")
        sys.exit(1)
    report(res, args.concurrency)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(res, f, indent=2, ensure_ascii=False)


if __name__ == "__main__":
    main()
