#!/usr/bin/env python3
"""Dataset transfer over an emulated WAN (issue 16): `yrd fetch` vs scp vs a raw TCP copy.

Two network namespaces, A (provider) and B (receiver), joined only by a TUN device each; the
user-space emulator `wan-link` (tests/src/bin/wan-link.rs) forwards packets between the two
with a one-way delay of RTT/2, a 1 Gbit/s bottleneck (serialisation by packet size), iid random
loss (seeded) and a drop-tail queue of one bandwidth-delay product. MTU 1500. The kernel here
has no netem qdisc, hence the emulator. Profiles:

* wan40:       40 ms RTT, 1 Gbit/s, no loss;
* wan80-loss:  80 ms RTT, 1 Gbit/s, 0.1 % random loss (each direction).

Per profile, on the same link and in the same run, medians of --runs runs (interleaved: raw TCP,
scp, yrd per run, so all three see the same load):

* `yrd fetch` of a JSON Lines dataset (enterprise-licence records) from `yrd run` A to `yrd run`
  B: the wall time of the command, which returns once every chunk is verified, stored and the
  records re-validated (end to end); also the node's own transfer time (chunks moving);
* scp of the same file A → B (a throw-away sshd in B) and a raw TCP copy A → B (Python sendfile
  into a receiver writing 1 MiB buffers);
* the 1 MiB fetch latency (p50, `yrd fetch` CLI and the API), in ms and in round trips;
* the emulator's CPU (share of one core) during each, and the load average.

The nodes' admin APIs and the CLI stay inside each namespace's own loopback; only node-to-node
traffic crosses the emulated link. Uses scripts/bench_transfer.py's records, nodes, sshd and raw
copy. Needs root (namespaces, TUN); prints SKIP and exits 0 otherwise.

Usage: bench_wan.py YRD [--wan-link PATH] [--profiles wan40,wan80-loss] [--size-mib 1024]
           [--runs 3] [--small-fetches 10] [--transport tcp-noise] [--compare YRD_BEFORE]
           [--json-out PATH] [--keep]
--compare runs every yrd fetch with both builds (provider and receiver alike), alternating
which goes first, and prints them side by side.
"""
import argparse
import contextlib
import ctypes
import fcntl
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_transfer as bt  # noqa: E402  (the records, nodes, sshd and raw copy)

from bench_transfer import BenchError, MIB, log, med, mbps, fmt, ratio  # noqa: E402

PROFILES = {
    "wan40": {"rtt_ms": 40.0, "rate_mbit": 1000.0, "loss": 0.0},
    "wan80-loss": {"rtt_ms": 80.0, "rate_mbit": 1000.0, "loss": 0.001},
}
ADDR_A, ADDR_B = "10.201.0.1", "10.201.0.2"
DEV = "wan0"
TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000
CLONE_NEWNET = 0x40000000
LIBC = ctypes.CDLL(None, use_errno=True)
HOME_NS = None  # this thread's own namespace, opened in main()
CLK_TCK = os.sysconf("SC_CLK_TCK")

# ------------------------------------------------------------------------------------------------
# Namespaces


def _setns(fd, what):
    if LIBC.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"setns ({what}): {os.strerror(e)}")


@contextlib.contextmanager
def netns(name):
    """Runs the block in network namespace `name` (this thread only: sockets made and processes
    started inside stay there)."""
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        _setns(fd, name)
        yield
    finally:
        _setns(HOME_NS, "home")
        os.close(fd)


def ip(*args, check=True):
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise BenchError(f"ip {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def in_ns(ns, *cmd):
    r = subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True,
                       timeout=30)
    return r.stdout.strip() if r.returncode == 0 else None


def open_tun(ns):
    """A TUN device (IFF_TUN|IFF_NO_PI) named DEV created inside `ns`; returns its descriptor."""
    with netns(ns):
        fd = os.open("/dev/net/tun", os.O_RDWR)
        try:
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", DEV.encode(), IFF_TUN | IFF_NO_PI))
        except OSError:
            os.close(fd)
            raise
    return fd


class Link:
    """Namespaces A and B and the emulator between them."""

    def __init__(self, wan_link, profile, name, tmp, seed, queue_bdp):
        self.profile, self.name = profile, name
        tag = f"yrdwan{os.getpid()}"
        self.ns_a, self.ns_b = f"{tag}-a", f"{tag}-b"
        self.created = []
        self.proc = None
        self.stats_path = os.path.join(tmp, f"wan-link-{name}.json")
        self.log_path = os.path.join(tmp, f"wan-link-{name}.log")
        self.wan_link, self.seed, self.queue_bdp = wan_link, seed, queue_bdp

    def up(self):
        for ns in (self.ns_a, self.ns_b):
            ip("netns", "add", ns)
            self.created.append(ns)
            ip("-n", ns, "link", "set", "lo", "up")
        fa, fb = open_tun(self.ns_a), open_tun(self.ns_b)
        p = self.profile
        bdp = p["rate_mbit"] * 1e6 / 8 * p["rtt_ms"] / 1000
        self.queue_bytes = int(bdp * self.queue_bdp)
        args = [self.wan_link, "--rtt-ms", str(p["rtt_ms"]), "--rate-mbit", str(p["rate_mbit"]),
                "--loss", str(p["loss"]), "--seed", str(self.seed),
                "--queue-bytes", str(self.queue_bytes), "--stats-out", self.stats_path]
        # Raised priority: the link must not wait behind the nodes (or a build) for the CPU.
        cmd = ["nice", "-n", "-10", *args] if os.geteuid() == 0 else args
        with open(self.log_path, "ab") as err:
            self.proc = subprocess.Popen(cmd, stdin=fa, stdout=fb, stderr=err,
                                         start_new_session=True)
        bt.PROCS.append(self.proc)
        os.close(fa)
        os.close(fb)
        for ns, me, peer in ((self.ns_a, ADDR_A, ADDR_B), (self.ns_b, ADDR_B, ADDR_A)):
            ip("-n", ns, "addr", "add", f"{me}/32", "peer", f"{peer}/32", "dev", DEV)
            ip("-n", ns, "link", "set", DEV, "mtu", "1500", "txqueuelen", "10000", "up")
        t0 = time.monotonic()
        while "ready" not in bt.tail(self.log_path, 5):
            if self.proc.poll() is not None or time.monotonic() - t0 > 10:
                raise BenchError(f"wan-link did not start:\n{bt.tail(self.log_path)}")
            time.sleep(0.02)
        self.rtt_ms = self.measure_rtt()
        self.sysctls = {k: in_ns(self.ns_a, "sysctl", "-n", k) for k in (
            "net.ipv4.tcp_congestion_control", "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem",
            "net.core.default_qdisc")}
        log(f"{self.name}: link up, TCP connect RTT median {self.rtt_ms:.1f} ms "
            f"(configured {p['rtt_ms']} ms), queue {self.queue_bytes} B "
            f"({self.queue_bdp}× BDP); namespace sysctls {self.sysctls}")

    def measure_rtt(self, n=7):
        """Median TCP connect time A → B (one round trip: SYN, SYN-ACK), ms."""
        with netns(self.ns_b):
            srv = socket.socket()
            srv.bind((ADDR_B, 0))
        srv.listen(16)
        times = []
        try:
            for _ in range(n):
                with netns(self.ns_a):
                    c = socket.socket()
                c.settimeout(5)
                t0 = time.perf_counter()
                c.connect(srv.getsockname())
                times.append((time.perf_counter() - t0) * 1000)
                c.close()
                srv.accept()[0].close()
        except OSError as e:
            raise BenchError(f"no TCP connection over the emulated link: {e}\n"
                             f"{bt.tail(self.log_path)}")
        finally:
            srv.close()
        return bt.med(times)

    def cpu_s(self):
        """CPU seconds (user + system) the emulator has used so far."""
        try:
            with open(f"/proc/{self.proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / CLK_TCK
        except (OSError, IndexError, ValueError, AttributeError):
            return None

    def stats(self):
        try:
            with open(self.stats_path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def counters(self):
        """Kernel counters of each namespace that tell where packets were lost outside the
        emulator: UDP receive-buffer overflows (QUIC), TCP retransmissions."""
        out = {}
        for side, ns in (("a", self.ns_a), ("b", self.ns_b)):
            snmp = in_ns(ns, "cat", "/proc/net/snmp") or ""
            rows = [line.split() for line in snmp.splitlines()]
            for i in range(0, len(rows) - 1, 2):
                head, vals = rows[i], rows[i + 1]
                if head and head[0] in ("Udp:", "Tcp:"):
                    for k in ("RcvbufErrors", "InErrors", "RetransSegs", "OutSegs"):
                        if k in head:
                            out[f"{side}_{head[0][:-1].lower()}_{k}"] = int(vals[head.index(k)])
        return out

    def down(self):
        if self.created:
            try:
                self.kernel_counters = self.counters()
            except (OSError, ValueError, subprocess.SubprocessError):
                self.kernel_counters = None
        if self.proc is not None:
            bt.stop(self.proc)
        for ns in self.created:
            for pid in (ip("netns", "pids", ns, check=False) or "").split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            if subprocess.run(["ip", "netns", "del", ns], capture_output=True).returncode != 0:
                log(f"could not delete namespace {ns}")
        self.created = []


class Measure:
    """Wall time, the emulator's CPU and the load average around one measured operation."""

    def __init__(self, link):
        self.link = link

    def __enter__(self):
        self.cpu0, self.t0 = self.link.cpu_s(), time.perf_counter()
        self.load0 = os.getloadavg()[0]
        return self

    def __exit__(self, *exc):
        self.secs = time.perf_counter() - self.t0
        cpu1 = self.link.cpu_s()
        self.cpu_share = (cpu1 - self.cpu0) / self.secs if None not in (cpu1, self.cpu0) else None
        self.load = (self.load0, os.getloadavg()[0])
        return False


# ------------------------------------------------------------------------------------------------
# Nodes inside the namespaces


class NsNode(bt.Node):
    """A bench_transfer node whose process, CLI calls and API calls run in namespace `ns`."""

    ns = None

    def start(self, log_path, timeout=30):
        with netns(self.ns):
            return super().start(log_path, timeout)

    def api(self, method, path, body=None, timeout=10):
        with netns(self.ns):
            return super().api(method, path, body, timeout)

    def cli(self, *args, timeout=600, check=True):
        with netns(self.ns):
            return super().cli(*args, timeout=timeout, check=check)


def listen_addr(transport, host, port):
    if transport == "quic":
        return f"/ip4/{host}/udp/{port}/quic-v1"
    return f"/ip4/{host}/tcp/{port}"


def publish(a, tmp, data, small_files):
    a.cli("schema", "publish", bt.SCHEMA, "--id", "enterprise-licence", "--version", "1.0.0")
    for ident in ("bench", "small"):
        offer = {"identifier": ident, "title": ident, "description": ident,
                 "media_type": "application/jsonl", "resource_code": f"310000-{ident.upper()}-00001",
                 "share_type": "unconditional", "share_method": "file", "update_cycle": "daily",
                 "schema_id": "enterprise-licence", "schema_version": "1.0.0"}
        p = os.path.join(tmp, f"offer-{ident}.json")
        with open(p, "w") as f:
            json.dump(offer, f)
        a.cli("catalog", "add", p)
    t0 = time.perf_counter()
    a.cli("publish", "bench", data, "--format", "jsonl", timeout=3600)
    log(f"published {os.path.getsize(data)} B in {time.perf_counter() - t0:.1f} s")
    for p in small_files:
        a.cli("publish", "small", p, "--format", "jsonl")


# ------------------------------------------------------------------------------------------------
# One profile


def run_profile(name, profile, args, tmp, data, size, small_files, a, b, builds, fails):
    link = Link(args.wan_link, profile, name, tmp, args.seed, args.queue_bdp)
    res = {**profile, "yrd": {label: {"runs": []} for label, _ in builds}, "raw": [], "scp": []}
    try:
        link.up()
        res.update(measured_rtt_ms=round(link.rtt_ms, 2), queue_bytes=link.queue_bytes,
                   sysctls=link.sysctls, loadavg_start=os.getloadavg())
        a.ns, b.ns = link.ns_a, link.ns_b
        port = bt.free_port(socket.SOCK_DGRAM if args.transport == "quic" else socket.SOCK_STREAM)
        a_addr = listen_addr(args.transport, ADDR_A, port)
        security = "tls" if args.transport == "tcp-tls" else "noise"
        a.configure([a_addr], [], [(b.peer_id, "bench-B")], security)
        b.configure([listen_addr(args.transport, ADDR_B, 0)], [f"{a_addr}/p2p/{a.peer_id}"],
                    [(a.peer_id, "bench-A")], security)
        sshd = bt.Sshd(tmp, host=ADDR_B, ns=lambda: netns(link.ns_b))
        sshd.dir = os.path.join(tmp, f"ssh-{name}")
        have_scp = sshd.ensure_installed()
        if have_scp:
            sshd.start()
            res["scp_cipher"] = sshd.cipher
        dest = os.path.join(tmp, "copy.dest")
        a_build = None
        try:
            for i in range(1, args.runs + 1):
                with Measure(link) as m:
                    secs, _ = bt.raw_tcp_copy(data, dest, host=ADDR_B,
                                              server_ns=lambda: netns(link.ns_b),
                                              client_ns=lambda: netns(link.ns_a))
                os.remove(dest)
                res["raw"].append({"mbps": mbps(size, secs), "secs": secs,
                                   "emulator_cpu": m.cpu_share, "load": m.load})
                log(f"{name} run {i}: raw TCP {secs:.2f} s ({mbps(size, secs):.0f} MB/s), "
                    f"emulator CPU {fmt(m.cpu_share, '.2f')}, load {m.load[1]:.2f}")
                if have_scp:
                    with Measure(link) as m:
                        secs = sshd.scp(data, dest, client_ns=lambda: netns(link.ns_a))
                    os.remove(dest)
                    res["scp"].append({"mbps": mbps(size, secs), "secs": secs,
                                       "emulator_cpu": m.cpu_share, "load": m.load})
                    log(f"{name} run {i}: scp {secs:.2f} s ({mbps(size, secs):.0f} MB/s), "
                        f"emulator CPU {fmt(m.cpu_share, '.2f')}")
                order = builds if i % 2 else list(reversed(builds))
                for label, binary in order:
                    if a_build != binary:
                        a.stop()
                        a.yrd = binary
                        a.start(os.path.join(tmp, f"A-{name}-{label}-{i}.log"))
                        a_build = binary
                    b.yrd = binary
                    b.wipe()
                    b.start(os.path.join(tmp, f"B-{name}-{label}-{i}.log"))
                    try:
                        b.wait_offer("bench", 1, args.sync_timeout)
                        with Measure(link) as m:
                            r = bt.fetch_big(a, b, size, args, f"{name}/{label}", i, fails)
                        if r is None:
                            raise BenchError(f"{name}/{label} run {i}: fetch failed")
                        r.update(emulator_cpu=m.cpu_share, load=m.load)
                        res["yrd"][label]["runs"].append(r)
                        if i == args.runs and args.small_fetches:
                            b.wait_offer("small", 2 * args.small_fetches, args.sync_timeout)
                            res["yrd"][label]["small"] = bt.fetch_small(
                                a, b, args, 2 * args.small_fetches, f"{name}/{label}", fails)
                    finally:
                        b.stop()
        finally:
            a.stop()
            if have_scp:
                sshd.stop()
        res["link_stats"] = link.stats()
        res["loadavg_end"] = os.getloadavg()
    except (BenchError, OSError, subprocess.SubprocessError) as e:
        fails.append(f"{name}: {e}")
        log(f"{name} failed: {e}")
    finally:
        link.down()
        res["kernel_counters"] = getattr(link, "kernel_counters", None)
    summarise(res)
    return res


def summarise(res):
    rtt = res["rtt_ms"]
    for key in ("raw", "scp"):
        res[f"{key}_mbps"] = med([r["mbps"] for r in res[key]])
        res[f"{key}_emulator_cpu"] = med([r["emulator_cpu"] for r in res[key]])
    for v in res["yrd"].values():
        rs = v["runs"]
        for key in ("e2e_mbps", "transfer_mbps", "wall_ms", "verify_ms", "emulator_cpu"):
            v[key] = med([r.get(key) for r in rs])
        v["e2e_vs_scp"] = ratio(v["e2e_mbps"], res["scp_mbps"])
        v["e2e_vs_raw"] = ratio(v["e2e_mbps"], res["raw_mbps"])
        v["transfer_vs_raw"] = ratio(v["transfer_mbps"], res["raw_mbps"])
        v["load"] = [round(x, 2) for r in rs for x in r.get("load", ())]
        s = v.get("small") or {}
        for how in ("cli", "api"):
            p50 = s.get(f"{how}_p50_ms")
            v[f"small_{how}_p50_ms"] = p50
            v[f"small_{how}_p50_rtts"] = p50 / rtt if p50 is not None and rtt else None


def report(results):
    print(f"yrd fetch over an emulated WAN ({results['transport']}), "
          f"{results['bytes'] / MIB:.0f} MiB, medians of {results['runs']} runs; "
          f"MB/s = 10^6 B/s; {results['version']}")
    hdr = ("profile", "build", "yrd e2e MB/s", "(xfer)", "scp MB/s", "raw MB/s", "e2e÷scp",
           "e2e÷raw", "1MiB p50 ms CLI (RTTs)", "API (RTTs)", "emul. CPU", "load")
    rows = []
    for name, p in results["profiles"].items():
        for label, v in p["yrd"].items():
            rows.append((name, label, fmt(v.get("e2e_mbps"), ".0f"),
                         fmt(v.get("transfer_mbps"), ".0f"), fmt(p.get("scp_mbps"), ".0f"),
                         fmt(p.get("raw_mbps"), ".0f"), fmt(v.get("e2e_vs_scp"), ".2f"),
                         fmt(v.get("e2e_vs_raw"), ".2f"),
                         f"{fmt(v.get('small_cli_p50_ms'), '.0f')} "
                         f"({fmt(v.get('small_cli_p50_rtts'), '.1f')})",
                         f"{fmt(v.get('small_api_p50_ms'), '.0f')} "
                         f"({fmt(v.get('small_api_p50_rtts'), '.1f')})",
                         f"{fmt(v.get('emulator_cpu'), '.2f')} / "
                         f"{fmt(p.get('raw_emulator_cpu'), '.2f')}",
                         " ".join(f"{x:.1f}" for x in (p.get("loadavg_start") or ())[:1]
                                  + (p.get("loadavg_end") or ())[:1])))
    widths = [max(len(str(r[i])) for r in [hdr] + rows) for i in range(len(hdr))]
    for r in [hdr] + rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))
    for name, p in results["profiles"].items():
        st = p.get("link_stats") or {}
        ab, ba = st.get("a_to_b") or {}, st.get("b_to_a") or {}
        print(f"{name}: {p['rtt_ms']:.0f} ms RTT (TCP connect median {fmt(p.get('measured_rtt_ms'), '.1f')}"
              f" ms), {p['rate_mbit']:.0f} Mbit/s, loss {p['loss'] * 100:.1f} %, queue "
              f"{p.get('queue_bytes')} B; A→B: {ab.get('offered')} packets, {ab.get('lost')} lost,"
              f" {ab.get('tail_dropped')} tail-dropped, max backlog {ab.get('max_backlog_bytes')} B;"
              f" B→A: {ba.get('offered')} packets, {ba.get('lost')} lost; kernel counters "
              f"{p.get('kernel_counters')}; sysctls in the "
              f"namespaces {p.get('sysctls')}; scp cipher {p.get('scp_cipher')}")
    print("e2e = bytes / wall time of `yrd fetch` (every chunk verified and stored, records "
          "re-validated); xfer = chunks moving only; emul. CPU = the emulator's share of one "
          "core during the yrd fetch / the raw copy; load = 1-min load average at start / end "
          f"of the profile ({os.cpu_count()} CPUs)")
    for f in results["failures"]:
        print("FAILURE: " + f.splitlines()[0])


def main():
    global HOME_NS
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("yrd", help="the yrd binary (release build)")
    ap.add_argument("--wan-link", help="the emulator (default: wan-link next to YRD)")
    ap.add_argument("--profiles", default=",".join(PROFILES))
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--small-fetches", type=int, default=10,
                    help="1 MiB fetches per method (CLI, API) in the last run of each build")
    ap.add_argument("--small-kib", type=int, default=1024)
    ap.add_argument("--transport", default="tcp-noise", choices=bt.TRANSPORTS)
    ap.add_argument("--compare", metavar="YRD_BEFORE",
                    help="another yrd build: every run fetches with both, side by side")
    ap.add_argument("--seed", type=int, default=1, help="the emulator's loss seed")
    ap.add_argument("--queue-bdp", type=float, default=1.0,
                    help="bottleneck queue in bandwidth-delay products")
    ap.add_argument("--fetch-timeout", type=int, default=1800)
    ap.add_argument("--sync-timeout", type=int, default=120)
    ap.add_argument("--json-out")
    ap.add_argument("--tmp-dir")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_wan: SKIP: needs root (network namespaces, TUN devices)")
        return
    if not os.path.exists("/dev/net/tun") or not os.path.isdir("/run/netns") and \
            subprocess.run(["ip", "netns", "list"], capture_output=True).returncode != 0:
        print("bench_wan: SKIP: no /dev/net/tun or no `ip netns`")
        return
    yrd = os.path.abspath(args.yrd)
    args.wan_link = os.path.abspath(args.wan_link or os.path.join(os.path.dirname(yrd),
                                                                  "wan-link"))
    for exe in (yrd, args.wan_link) + ((os.path.abspath(args.compare),) if args.compare else ()):
        if not os.access(exe, os.X_OK):
            sys.exit(f"bench_wan: {exe} is not an executable")
    profiles = [p.strip() for p in args.profiles.split(",") if p.strip()]
    if not profiles or any(p not in PROFILES for p in profiles):
        ap.error(f"--profiles: of {', '.join(PROFILES)}")
    builds = [("after", yrd)] + ([("before", os.path.abspath(args.compare))]
                                 if args.compare else [])
    if not args.compare:
        builds = [("yrd", yrd)]
    HOME_NS = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    signal.signal(signal.SIGTERM, bt._on_signal)
    signal.signal(signal.SIGHUP, bt._on_signal)
    tmp = tempfile.mkdtemp(prefix="yrd-bench-wan-", dir=args.tmp_dir)
    log(f"work dir {tmp}")
    results = {"transport": args.transport, "runs": args.runs, "profiles": {}, "failures": [],
               "version": subprocess.run([yrd, "--version"], capture_output=True,
                                         text=True).stdout.strip(),
               "builds": dict(builds), "cpus": os.cpu_count()}
    try:
        data = os.path.join(tmp, "bench.jsonl")
        size, nrec = bt.write_dataset(data, args.size_mib * MIB, seed=1)
        results.update(bytes=size, records=nrec)
        small_files = []
        for k in range(1, 2 * args.small_fetches + 1):
            p = os.path.join(tmp, f"small-{k}.jsonl")
            bt.write_dataset(p, args.small_kib * 1024, seed=1000 + k, first_serial=10_000_000 * k)
            small_files.append(p)
        log(f"dataset {size} B, {nrec} records; {len(small_files)} small versions")
        a = NsNode(yrd, tmp, "A", "310000")
        a.init([])
        b = NsNode(yrd, tmp, "B", "320000")
        b.init(["--member", a.peer_id])
        # Publishing needs no network: A runs in a namespace of its own for it.
        ip("netns", "add", f"yrdwan{os.getpid()}-pub")
        try:
            ip("-n", f"yrdwan{os.getpid()}-pub", "link", "set", "lo", "up")
            a.ns = f"yrdwan{os.getpid()}-pub"
            a.configure([listen_addr("tcp-noise", "127.0.0.1", 0)], [], [(b.peer_id, "bench-B")],
                        "noise")
            a.start(os.path.join(tmp, "A-publish.log"))
            try:
                publish(a, tmp, data, small_files)
            finally:
                a.stop()
        finally:
            subprocess.run(["ip", "netns", "del", f"yrdwan{os.getpid()}-pub"], capture_output=True)
        for name in profiles:
            results["profiles"][name] = run_profile(name, PROFILES[name], args, tmp, data, size,
                                                    small_files, a, b, builds,
                                                    results["failures"])
    except BenchError as e:
        results["failures"].append(str(e))
        log(f"failed: {e}")
    except KeyboardInterrupt as e:
        log(f"interrupted ({e})")
        results["failures"].append(f"interrupted ({e})")
    finally:
        bt.stop_all()
        if args.keep or results["failures"]:
            log(f"work dir kept: {tmp}")
        else:
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)
    report(results)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(results, f, indent=1, ensure_ascii=False)
            f.write("\n")
    if results["failures"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
