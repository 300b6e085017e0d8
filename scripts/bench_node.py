#!/usr/bin/env python3
"""Cold start and idle RSS of one `yrd run` process (whole-process figures).

Cold start: from exec to the first successful `GET /api/v1/health` (the node has opened its
database, bound libp2p and the API). Idle RSS: VmRSS after 5 s idle, and VmHWM (peak).
Runs N times on fresh data dirs and prints medians.  Usage: bench_node.py YRD_BINARY [RUNS [JSON_OUT]]
"""
import json, os, signal, socket, statistics, subprocess, sys, tempfile, time, urllib.request

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def status_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0

def one(yrd, tmp, i):
    d = os.path.join(tmp, f"n{i}")
    port = free_port()
    subprocess.run([yrd, "init", "--data-dir", d, "--region", "310000", "--name", "bench",
                    "--listen", "/ip4/127.0.0.1/tcp/0", "--api", f"127.0.0.1:{port}"],
                   check=True, stdout=subprocess.DEVNULL)
    token = open(os.path.join(d, "api.token")).read().strip()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/health",
                                 headers={"Authorization": f"Bearer {token}"})
    t0 = time.perf_counter()
    p = subprocess.Popen([yrd, "--data-dir", d, "run"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "warn"})
    while True:
        try:
            with urllib.request.urlopen(req, timeout=1) as r:
                if r.status == 200:
                    break
        except Exception:
            pass
        if time.perf_counter() - t0 > 20:
            p.kill(); raise SystemExit("node did not start within 20 s")
        time.sleep(0.002)
    cold = time.perf_counter() - t0
    time.sleep(5)
    rss, hwm = status_kb(p.pid, "VmRSS"), status_kb(p.pid, "VmHWM")
    p.send_signal(signal.SIGTERM); p.wait(timeout=20)
    return cold, rss, hwm

def main():
    yrd = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    with tempfile.TemporaryDirectory() as tmp:
        results = [one(yrd, tmp, i) for i in range(runs)]
    cold = statistics.median(r[0] for r in results)
    rss = statistics.median(r[1] for r in results) / 1024
    hwm = statistics.median(r[2] for r in results) / 1024
    print(f"node cold start (exec → health 200), median of {runs}: {cold*1000:.0f} ms")
    print(f"node idle RSS after 5 s, median of {runs}: {rss:.1f} MiB (peak {hwm:.1f} MiB)")
    figures = {"cold_start_ms": round(cold * 1000, 1), "idle_rss_mib": round(rss, 1),
               "peak_rss_mib": round(hwm, 1), "runs": runs}
    print(json.dumps(figures))
    if len(sys.argv) > 3:
        with open(sys.argv[3], "w") as f:
            json.dump(figures, f, indent=1)
            f.write("\n")

if __name__ == "__main__":
    main()
