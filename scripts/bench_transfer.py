#!/usr/bin/env python3
"""Dataset transfer between two `yrd run` processes on loopback, against scp and a raw TCP copy.

One run of this script measures, side by side on the same machine and the same file:

* `yrd fetch` of one JSON Lines dataset (records of the `enterprise-licence` standard) from node
  A (310000) to node B (320000), per transport variant (`tcp-noise`, `tcp-tls`, `quic`):
  transfer throughput (`bytes_total / transfer_ms`, chunks moving only) and end-to-end
  throughput (wall time of the `yrd fetch` command: chunks, fsyncs, digest, re-validation of every
  record by the receiver); peak RSS (VmHWM, reset just before the fetch) of both nodes;
* `scp` of the same file to a throw-away `sshd` on loopback, and a raw TCP copy (Python
  `socket.sendfile` into a receiver writing 1 MiB buffers), MB/s;
* the latency of fetching a small (1 MiB) dataset: p50/p90 of the `yrd fetch` command (which
  long-polls its node with `wait_ms`) and of the API (POST /api/v1/fetch, then long-poll the transfer
  with `wait_ms`, or, in turns, GET it every 2 ms);
* `yrd publish` of the big file (validate every record + store the blob).

Each fetch is a fresh one: B's database and blobs are wiped before every run (its key, token and
config stay, so A keeps it as a member) and B re-syncs A's catalogue before the timer starts. The
small-dataset latency uses distinct published versions of "small", one per fetch.

All reads come from the page cache (nothing is dropped); writes are not synced by scp and the raw
copy (the raw copy also reports the time of one final fsync), while yrd syncs every chunk.
MB/s means 10^6 bytes per second; medians over --runs runs.

Usage: bench_transfer.py YRD_BINARY [--size-mib 1024] [--runs 3]
           [--transports tcp-noise,tcp-tls,quic] [--json-out PATH] [--small-fetches 20]
           [--tmp-dir DIR] [--keep] [--receiver-before YRD]
"""
import argparse
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA = os.path.join(ROOT, "schemas", "datasets", "enterprise-licence.schema.json")
MIB = 1 << 20
TRANSPORTS = ("tcp-noise", "tcp-tls", "quic")

# ------------------------------------------------------------------------------------------------
# Small helpers


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


def free_port(kind=socket.SOCK_STREAM):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def status_kb(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_hwm(pid):
    """Resets VmHWM to the current RSS (Linux: `echo 5 > /proc/PID/clear_refs`)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def tail(path, n=40):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = re.sub(r"\x1b\[[0-9;]*m", "", f.read().decode("utf-8", "replace"))
            lines = text.splitlines()
        return "\n".join(lines[-n:])
    except OSError as e:
        return f"(cannot read {path}: {e})"


def pct(values, q):
    """The q-th percentile (nearest rank) of values."""
    v = sorted(values)
    if not v:
        return None
    k = max(0, min(len(v) - 1, int(round(q / 100.0 * len(v) + 0.5)) - 1))
    return v[k]


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def mbps(nbytes, secs):
    return nbytes / secs / 1e6 if secs and secs > 0 else None


def fmt(v, spec=".1f", none="—"):
    return none if v is None else format(v, spec)


# ------------------------------------------------------------------------------------------------
# Process registry: every child runs in its own process group and is killed on exit.

PROCS = []


def spawn(args, logfile, env=None):
    out = open(logfile, "ab")
    p = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         start_new_session=True, env=env)
    out.close()
    PROCS.append(p)
    return p


def stop(p, timeout=30):
    if p is None:
        return
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log(f"pid {p.pid} did not stop within {timeout} s of SIGTERM: SIGKILL")
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(timeout=10)
    if p in PROCS:
        PROCS.remove(p)


def stop_all():
    for p in list(PROCS):
        try:
            stop(p, timeout=15)
        except Exception as e:  # keep going: every process must be tried
            log(f"cleanup of pid {p.pid}: {e}")


def _on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


# ------------------------------------------------------------------------------------------------
# Records of the enterprise-licence standard

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_VALUE = {c: i for i, c in enumerate(USCC_ALPHABET)}
USCC_WEIGHTS = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28]
ORG_WEIGHTS = [3, 7, 9, 10, 5, 8, 4, 2]
ID_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
ID_CHECK = "10X98765432"


def uscc_check(first17):
    """GB 32100-2015 check character (as node/src/samples.rs `uscc_check_char`)."""
    s = sum(USCC_VALUE[c] * w for c, w in zip(first17, USCC_WEIGHTS))
    return USCC_ALPHABET[(31 - s % 31) % 31]


def org_check(body8):
    """GB 11714-1997 organization-code check character (as samples.rs `org_code_check_char`)."""
    s = sum(int(c, 36) * w for c, w in zip(body8, ORG_WEIGHTS))
    n = 11 - s % 11
    return "X" if n == 10 else "0" if n == 11 else str(n)


def id_number(region, birth, seq):
    """GB 11643-1999 resident ID number with its ISO 7064 MOD 11-2 check character."""
    first17 = f"{region}{birth.replace('-', '')}{seq:03d}"
    return first17 + ID_CHECK[sum(int(c) * w for c, w in zip(first17, ID_WEIGHTS)) % 11]


def uscc_for(region, n):
    """A valid, new-style (`MA…`) code, unique for each n < 31^6."""
    tail = ""
    for _ in range(6):
        n, r = divmod(n, 31)
        tail = USCC_ALPHABET[r] + tail
    body = "MA" + tail
    first17 = f"91{region}{body}{org_check(body)}"
    return first17 + uscc_check(first17)


# (district code, city, district) in the Delta (GB/T 2260).
DISTRICTS = [
    ("310101", "上海市", "黄浦区"), ("310104", "上海市", "徐汇区"), ("310115", "上海市", "浦东新区"),
    ("310112", "上海市", "闵行区"), ("320102", "南京市", "玄武区"), ("320505", "苏州市", "虎丘区"),
    ("320211", "无锡市", "滨湖区"), ("330106", "杭州市", "西湖区"), ("330212", "宁波市", "鄞州区"),
    ("340104", "合肥市", "蜀山区"), ("340202", "芜湖市", "镜湖区"), ("330402", "嘉兴市", "南湖区"),
]
INDUSTRIES = [
    ("信息科技", "一般项目：技术服务、技术开发、技术咨询、技术交流、技术转让、技术推广；软件开发；信息系统集成服务；数据处理和存储支持服务；计算机软硬件及辅助设备零售。（除依法须经批准的项目外，凭营业执照依法自主开展经营活动）"),
    ("精密机械", "一般项目：通用设备制造（不含特种设备制造）；机械零件、零部件加工；金属切削加工服务；机械设备销售；五金产品批发。（除依法须经批准的项目外，凭营业执照依法自主开展经营活动）"),
    ("贸易", "许可项目：货物进出口；技术进出口。一般项目：日用百货销售；五金产品批发；电子产品销售；针纺织品销售；化工产品销售（不含许可类化工产品）。（除依法须经批准的项目外，凭营业执照依法自主开展经营活动）"),
    ("餐饮管理", "许可项目：餐饮服务；食品销售。一般项目：餐饮管理；外卖递送服务；食用农产品零售。（除依法须经批准的项目外，凭营业执照依法自主开展经营活动）"),
    ("建设工程", "许可项目：建设工程施工；住宅室内装饰装修。一般项目：园林绿化工程施工；建筑材料销售；工程管理服务。（除依法须经批准的项目外，凭营业执照依法自主开展经营活动）"),
    ("生物医药科技", "一般项目：医学研究和试验发展；技术服务、技术开发、技术咨询、技术交流、技术转让、技术推广；第一类医疗器械销售；第二类医疗器械销售。（除依法须经批准的项目外，凭营业执照依法自主开展经营活动）"),
    ("新能源科技", "一般项目：新兴能源技术研发；太阳能发电技术服务；储能技术服务；电池销售；光伏设备及元器件销售。（除依法须经批准的项目外，凭营业执照依法自主开展经营活动）"),
    ("供应链管理", "许可项目：道路货物运输（不含危险货物）。一般项目：供应链管理服务；普通货物仓储服务（不含危险化学品等需许可审批的项目）；国内货物运输代理；装卸搬运。（除依法须经批准的项目外，凭营业执照依法自主开展经营活动）"),
    ("企业管理咨询", "一般项目：企业管理咨询；信息咨询服务（不含许可类信息咨询服务）；市场营销策划；会议及展览服务；商务代理代办服务。（除依法须经批准的项目外，凭营业执照依法自主开展经营活动）"),
]
TRADE_NAMES = ["恒信", "华泰", "宏达", "新源", "博远", "金诚", "瑞丰", "锦程", "天合", "中和", "永安",
               "嘉禾", "明德", "众诚", "鼎盛", "凯越", "晨光", "海润", "汇通", "启元", "致远", "同舟",
               "长风", "云帆", "星河", "泓川", "臻品", "睿达", "聚力", "德润"]
TYPES = ["有限责任公司（自然人投资或控股）", "有限责任公司（自然人独资）",
         "有限责任公司（非自然人投资或控股的法人独资）", "有限责任公司（国有独资）",
         "有限责任公司（外商投资、非独资）", "股份有限公司（非上市、自然人投资或控股）",
         "股份有限公司（上市）", "个人独资企业"]
TYPE_WEIGHTS = [50, 16, 10, 2, 6, 5, 1, 10]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华建国文斌宇浩然欣怡子涵梓轩"
ROADS = ["人民路", "中山路", "解放路", "建设路", "长江路", "淮海中路", "科技大道", "创新路", "湖滨路"]
STATUSES = ["存续"] * 85 + ["在业"] * 5 + ["注销"] * 5 + ["吊销"] * 3 + ["迁出", "撤销"]


def date_str(rng, y0, y1):
    y = rng.randint(y0, y1)
    m = rng.randint(1, 12)
    d = rng.randint(1, 28)
    return f"{y:04d}-{m:02d}-{d:02d}"


def record_tail(rng):
    """One valid record without its `uscc`: (region of the code, JSON of the other 14 fields
    starting after the opening brace's first member)."""
    code, city, district = rng.choice(DISTRICTS)
    word, scope = rng.choice(INDUSTRIES)
    kind = rng.choices(TYPES, TYPE_WEIGHTS)[0]
    est = date_str(rng, 1995, 2024)
    ey = int(est[:4])
    approval = est if rng.random() < 0.4 else date_str(rng, ey + 1, 2025) if ey < 2025 else est
    if kind == "个人独资企业" or rng.random() < 0.5:
        term_to = None
    else:
        term_to = f"{ey + rng.choice([10, 20, 30, 50]) - 1:04d}{est[4:]}"
    name = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.randint(1, 2)))
    birth = date_str(rng, 1960, 1999)
    currency = rng.choice(["CNY", "USD", "HKD", "EUR", "JPY"]) if "外商" in kind else "CNY"
    fen = rng.choice([100_000, 500_000, 1_000_000, 3_000_000, 5_000_000, 10_000_000, 50_000_000]) * 100
    if rng.random() < 0.1:
        fen = rng.randint(10_000_000, 500_000_000)
    at_city = rng.random() < 0.3
    fields = {
        "enterprise_name": f"{city[:-1]}{rng.choice(TRADE_NAMES)}{word}" + (
            "商行" if kind == "个人独资企业" else "股份有限公司" if "股份" in kind else "有限公司"),
        "enterprise_type": kind,
        "legal_representative": name,
        "legal_representative_id_number": id_number(code, birth, rng.randint(0, 999)),
        "registered_capital": fen / 100.0,
        "currency": currency,
        "establishment_date": est,
        "business_term_to": term_to,
        "registration_authority": f"{city}{'' if at_city else district}市场监督管理局",
        "approval_date": approval,
        "address": f"{city}{district}{rng.choice(ROADS)}{rng.randint(1, 2999)}号"
                   f"{rng.randint(1, 30)}0{rng.randint(1, 9)}室",
        "region_code": code[:4] + "00" if at_city else code,
        "status": rng.choice(STATUSES),
        "business_scope": scope,
    }
    return code, json.dumps(fields, ensure_ascii=False, separators=(",", ":"))[1:]


def write_dataset(path, target_bytes, seed, first_serial=0):
    """JSON Lines of unique valid records (a unique `uscc` per line), at least target_bytes long.
    Returns (bytes, records)."""
    rng = random.Random(seed)
    pool = [record_tail(rng) for _ in range(4096)]
    size = n = 0
    serial = first_serial
    with open(path, "wb") as f:
        while size < target_bytes:
            lines = []
            for _ in range(2048):
                region, rest = pool[serial % 4096]
                lines.append(f'{{"uscc":"{uscc_for(region, serial)}",{rest}\n')
                serial += 1
            buf = "".join(lines).encode()
            if size + len(buf) > target_bytes:  # finish on the first line boundary past target
                cut = buf.find(b"\n", target_bytes - size - 1) + 1
                buf = buf[:cut] if cut > 0 else buf
            f.write(buf)
            size += len(buf)
            n += buf.count(b"\n")
    return size, n


# ------------------------------------------------------------------------------------------------
# Nodes


class Node:
    def __init__(self, yrd, tmp, name, region):
        self.yrd, self.name, self.region = yrd, name, region
        self.dir = os.path.join(tmp, f"node-{name}")
        self.api_port = free_port()
        self.proc = None
        self.log_path = None
        self.peer_id = None
        self.token = None

    def init(self, extra):
        out = subprocess.run(
            [self.yrd, "--json", "init", "--data-dir", self.dir, "--region", self.region,
             "--name", f"bench-{self.name}", "--listen", "/ip4/127.0.0.1/tcp/0",
             "--api", f"127.0.0.1:{self.api_port}", *extra],
            check=True, capture_output=True, text=True, timeout=60).stdout
        self.peer_id = json.loads(out)["peer_id"]
        self.token = open(os.path.join(self.dir, "api.token")).read().strip()
        self.config = os.path.join(self.dir, "yrd.toml")
        self.pristine = open(self.config).read()

    def configure(self, listen, bootstrap, members, tcp_security):
        """Rewrites [network] and [federation] of the config `yrd init` wrote."""
        q = lambda xs: "[" + ", ".join(json.dumps(x) for x in xs) + "]"
        out, section = [], None
        for line in self.pristine.splitlines():
            s = line.strip()
            if s.startswith("["):
                section = s
                out.append(line)
                if s == "[network]":
                    out.append(f'tcp_security = "{tcp_security}"')
                if s == "[federation]":
                    # `yrd init` may write the table empty: the members go in either way.
                    items = ", ".join(f'{{ peer_id = "{p}", name = "{n}" }}' for p, n in members)
                    out.append(f"members = [{items}]")
                continue
            key = s.split("=")[0].strip() if "=" in s else None
            if section == "[network]" and key in ("listen", "bootstrap", "tcp_security"):
                if key == "listen":
                    out.append(f"listen = {q(listen)}")
                elif key == "bootstrap":
                    out.append(f"bootstrap = {q(bootstrap)}")
                continue
            if section == "[federation]" and key == "members":
                continue
            out.append(line)
        with open(self.config, "w") as f:
            f.write("\n".join(out) + "\n")
        r = subprocess.run([self.yrd, "config", "check", self.config], capture_output=True,
                           text=True, timeout=30)
        if r.returncode != 0:
            raise BenchError(f"config of {self.name} refused:\n{r.stdout}{r.stderr}\n"
                             f"--- config ---\n{open(self.config).read()}")

    def wipe(self):
        """Deletes the database and blobs, keeping key, token and config."""
        keep = {"node.key", "api.token", "yrd.toml"}
        for entry in os.listdir(self.dir):
            if entry in keep:
                continue
            p = os.path.join(self.dir, entry)
            shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.remove(p)

    def start(self, log_path, timeout=30):
        self.log_path = log_path
        env = {k: v for k, v in os.environ.items() if k != "RUST_LOG"}
        self.proc = spawn([self.yrd, "--data-dir", self.dir, "run"], log_path, env=env)
        t0 = time.monotonic()
        while True:
            if self.proc.poll() is not None:
                raise BenchError(f"node {self.name} exited with {self.proc.returncode} at start;"
                                 f" log {log_path}:\n{tail(log_path)}")
            try:
                if self.api("GET", "/api/v1/health", timeout=1) is not None:
                    return time.monotonic() - t0
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() - t0 > timeout:
                raise BenchError(f"node {self.name} not answering /api/v1/health within {timeout} s;"
                                 f" log {log_path}:\n{tail(log_path)}")
            time.sleep(0.02)

    def stop(self):
        stop(self.proc)
        self.proc = None

    def api(self, method, path, body=None, timeout=10):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://127.0.0.1:{self.api_port}{path}", data=data,
                                     method=method,
                                     headers={"Authorization": f"Bearer {self.token}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read() or b"null")

    def cli(self, *args, timeout=600, check=True):
        r = subprocess.run([self.yrd, "--data-dir", self.dir, "--json", *args],
                           capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise BenchError(f"`yrd {' '.join(args)}` on {self.name} exited {r.returncode}:\n"
                             f"{r.stdout[-4000:]}{r.stderr[-4000:]}")
        return r

    def wait_offer(self, dataset, version, timeout):
        """Until our catalogue search shows `dataset` of A with latest_version >= version."""
        t0 = time.monotonic()
        last = None
        while time.monotonic() - t0 < timeout:
            try:
                hits = self.api("GET", f"/api/v1/catalogue/search?text={dataset}")
                for h in hits if isinstance(hits, list) else hits.get("hits", []):
                    e = h.get("entry", {})
                    if e.get("offer", {}).get("identifier") == dataset:
                        last = e.get("latest_version")
                        if (last or 0) >= version:
                            return time.monotonic() - t0
            except (OSError, urllib.error.URLError, ValueError):
                pass
            time.sleep(0.05)
        health = None
        try:
            health = self.api("GET", "/api/v1/health")
        except Exception as e:
            health = str(e)
        raise BenchError(f"{self.name}: offer {dataset} v{version} not in the catalogue within "
                         f"{timeout} s (latest seen: {last}; health: {health})")


class RssSampler:
    """Peak RSS (VmHWM, reset at start where the kernel allows) of some pids while it runs."""

    def __init__(self, pids):
        self.pids = pids
        self.reset = all(reset_hwm(p) for p in pids)
        self.peak = {p: status_kb(p, "VmHWM") for p in pids}
        self.stop_ev = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.stop_ev.wait(0.1):
            self._sample()

    def _sample(self):
        for p in self.pids:
            self.peak[p] = max(self.peak[p], status_kb(p, "VmHWM"), status_kb(p, "VmRSS"))

    def finish(self):
        self.stop_ev.set()
        self.t.join()
        self._sample()
        return {p: kb / 1024 for p, kb in self.peak.items()}


# ------------------------------------------------------------------------------------------------
# Baselines


def raw_tcp_copy(src, dest, host="127.0.0.1", server_ns=contextlib.nullcontext,
                 client_ns=contextlib.nullcontext):
    """Python raw TCP copy (loopback by default): sendfile → recv_into 1 MiB → write. Returns
    (seconds without fsync, seconds of the final fsync). `server_ns`/`client_ns` are context
    managers in which each end's socket is made (bench_wan.py: a network namespace each)."""
    with server_ns():
        srv = socket.socket()
        srv.bind((host, 0))
    srv.listen(1)
    srv.settimeout(30)
    result = {}

    def receiver():
        try:
            conn, _ = srv.accept()
            conn.settimeout(120)
            buf = bytearray(MIB)
            mv = memoryview(buf)
            with conn, open(dest, "wb", buffering=0) as f:
                while True:
                    n = conn.recv_into(buf)
                    if n == 0:
                        break
                    f.write(mv[:n])
                result["done"] = time.perf_counter()
                f.flush()
                os.fsync(f.fileno())
                result["synced"] = time.perf_counter()
        except Exception as e:
            result["error"] = e

    th = threading.Thread(target=receiver, daemon=True)
    th.start()
    t0 = time.perf_counter()
    with client_ns():
        conn = socket.create_connection(srv.getsockname(), timeout=30)
    with conn as s, open(src, "rb") as f:
        s.sendfile(f)
        s.shutdown(socket.SHUT_WR)
        th.join(timeout=600)
    srv.close()
    if th.is_alive() or "error" in result or "done" not in result:
        raise BenchError(f"raw TCP copy failed: {result.get('error', 'receiver did not finish')}")
    if os.path.getsize(dest) != os.path.getsize(src):
        raise BenchError("raw TCP copy: size differs")
    return result["done"] - t0, result["synced"] - result["done"]


class Sshd:
    """A throw-away sshd (on loopback by default) with its own host key and authorised client
    key. `ns` is a context manager in which sshd is started (bench_wan.py: a namespace)."""

    def __init__(self, tmp, host="127.0.0.1", ns=contextlib.nullcontext):
        self.host, self.ns = host, ns
        self.dir = os.path.join(tmp, "ssh")
        self.proc = None
        self.note = None

    def find(self):
        for p in (shutil.which("sshd"), "/usr/sbin/sshd"):
            if p and os.path.exists(p):
                return p
        return None

    def ensure_installed(self):
        if self.find() and shutil.which("scp") and shutil.which("ssh-keygen"):
            return True
        if os.geteuid() != 0:
            self.note = "scp skipped: openssh-server/client not installed and not running as root"
            return False
        log("installing openssh-server and openssh-client (apt-get)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        cmd = ["apt-get", "install", "-y", "-q", "openssh-server", "openssh-client"]
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=900)
            r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if r.returncode != 0 or not self.find():
            self.note = f"scp skipped: apt-get install failed: {r.stderr[-500:]}"
            return False
        return True

    def start(self):
        os.makedirs(self.dir, mode=0o700)
        for k in ("host", "client"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                            os.path.join(self.dir, k)], check=True, timeout=30)
        shutil.copy(os.path.join(self.dir, "client.pub"), os.path.join(self.dir, "authorized_keys"))
        if os.geteuid() == 0 and not os.path.isdir("/run/sshd"):
            os.makedirs("/run/sshd", mode=0o755)  # sshd's privilege separation directory
        self.port = free_port()
        cfg = os.path.join(self.dir, "sshd_config")
        with open(cfg, "w") as f:
            f.write(f"""ListenAddress {self.host}
Port {self.port}
HostKey {self.dir}/host
AuthorizedKeysFile {self.dir}/authorized_keys
PidFile {self.dir}/sshd.pid
StrictModes no
UsePAM no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
Subsystem sftp internal-sftp
LogLevel ERROR
""")
        self.log_path = os.path.join(self.dir, "sshd.log")
        with self.ns():
            self.proc = spawn([self.find(), "-D", "-e", "-f", cfg, "-p", str(self.port)],
                              self.log_path)
        t0 = time.monotonic()
        while True:
            if self.proc.poll() is not None:
                raise BenchError(f"sshd exited with {self.proc.returncode}:\n{tail(self.log_path)}")
            try:
                with self.ns():
                    socket.create_connection((self.host, self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() - t0 > 15:
                    raise BenchError(f"sshd not listening within 15 s:\n{tail(self.log_path)}")
                time.sleep(0.05)
        self.user = os.environ.get("USER") or __import__("pwd").getpwuid(os.geteuid()).pw_name
        self.cipher = None
        r = subprocess.run(["ssh", "-G", "-p", str(self.port), self.host], capture_output=True,
                           text=True, timeout=30)
        for line in r.stdout.splitlines():
            if line.startswith("ciphers "):
                self.cipher = line.split()[1].split(",")[0]

    def scp(self, src, dest, client_ns=contextlib.nullcontext):
        t0 = time.perf_counter()
        with client_ns():
            r = subprocess.run(["scp", "-q", "-P", str(self.port),
                                "-i", os.path.join(self.dir, "client"),
                                "-o", "StrictHostKeyChecking=no", "-o",
                                "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
                                "-o", "LogLevel=ERROR", src, f"{self.user}@{self.host}:{dest}"],
                               capture_output=True, text=True, timeout=1800)
        secs = time.perf_counter() - t0
        if r.returncode != 0:
            raise BenchError(f"scp exited {r.returncode}: {r.stderr[-2000:]}\nsshd log:\n"
                             f"{tail(self.log_path)}")
        if os.path.getsize(dest) != os.path.getsize(src):
            raise BenchError("scp: size differs")
        return secs

    def stop(self):
        stop(self.proc)


def disk_sync_ms(tmp, n=32):
    """Median ms of one 1 MiB write + fdatasync (what a node pays per chunk, plus a journal sync)."""
    path = os.path.join(tmp, "synctest")
    buf = os.urandom(MIB)
    times = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for i in range(n):
            t0 = time.perf_counter()
            os.pwrite(fd, buf, i * MIB)
            os.fdatasync(fd)
            times.append((time.perf_counter() - t0) * 1000)
    finally:
        os.close(fd)
        os.remove(path)
    return statistics.median(times)


# ------------------------------------------------------------------------------------------------
# The benchmark


def listen_addrs(transport, port):
    if transport == "quic":
        return f"/ip4/127.0.0.1/udp/{port}/quic-v1"
    return f"/ip4/127.0.0.1/tcp/{port}"


def fetch_big(a, b, size, args, variant, run, fails):
    """One timed `yrd fetch` of bench on B. Returns a dict of figures (or None on failure)."""
    sampler = RssSampler([a.proc.pid, b.proc.pid])
    t0 = time.perf_counter()
    try:
        r = b.cli("fetch", "310000/bench", timeout=args.fetch_timeout, check=False)
        wall = time.perf_counter() - t0
    except subprocess.TimeoutExpired:
        wall = None
        r = None
    rss = sampler.finish()
    view = None
    if r is not None and r.returncode == 0:
        try:
            view = json.loads(r.stdout)
        except ValueError:
            view = None
    # An unconditional offer arrives as a masked copy (its standard's personal fields masked by
    # default), a little smaller than the published file.
    if view is None or view.get("status") != "done" or not (
            view.get("bytes_total") == size or view.get("derived")):
        try:
            transfers = b.api("GET", "/api/v1/transfers")
        except Exception as e:
            transfers = f"(cannot read transfers: {e})"
        msg = (f"{variant} run {run}: yrd fetch "
               f"{'timed out after %d s' % args.fetch_timeout if r is None else 'exited %d' % r.returncode}"
               f"\n--- stdout ---\n{'' if r is None else r.stdout[-3000:]}"
               f"\n--- stderr ---\n{'' if r is None else r.stderr[-3000:]}"
               f"\n--- B transfers ---\n{json.dumps(transfers, indent=1)[-3000:]}"
               f"\n--- A log tail ({a.log_path}) ---\n{tail(a.log_path)}"
               f"\n--- B log tail ({b.log_path}) ---\n{tail(b.log_path)}")
        log(msg)
        fails.append(msg)
        return None
    res = {
        "bytes_total": view["bytes_total"],
        "transfer_ms": view.get("transfer_ms"),
        "total_ms": view.get("total_ms"),
        "wall_ms": round(wall * 1000, 1),
        "transfer_mbps": mbps(view["bytes_total"], view.get("transfer_ms", 0) / 1000),
        "e2e_mbps": mbps(view["bytes_total"], wall),
        "verify_ms": (view.get("total_ms") or 0) - (view.get("transfer_ms") or 0),
        "refetched_chunks": view.get("refetched_chunks"),
        "attempts": view.get("attempts"),
        # Where a slow run's time went (a first fetch after a big publish: docs/benchmarks.md).
        "phases": view.get("phases"),
        "rss_provider_mib": round(rss[a.proc.pid], 1),
        "rss_receiver_mib": round(rss[b.proc.pid], 1),
        "hwm_reset": sampler.reset,
    }
    log(f"{variant} run {run}: {res['bytes_total']} B, transfer {res['transfer_ms']} ms "
        f"({fmt(res['transfer_mbps'])} MB/s), node total {res['total_ms']} ms, CLI wall "
        f"{res['wall_ms']:.0f} ms ({fmt(res['e2e_mbps'])} MB/s); RSS A {res['rss_provider_mib']} "
        f"MiB, B {res['rss_receiver_mib']} MiB")
    return res


def fetch_small(a, b, args, small_versions, variant, fails):
    """Latency of fresh fetches of 1 MiB versions of `small`: even versions by the CLI, odd ones
    by the API — POST, then either long-poll the transfer (`GET …?wait_ms=30000`, as the CLI
    and an information system would: `api_ms`) or GET it every 2 ms (`api_poll_ms`), taking
    turns so both meet the same machine."""
    cli_ms, api_ms, api_poll_ms, node_ms = [], [], [], []
    phases = {}
    for k in range(1, small_versions + 1):
        t0 = time.perf_counter()
        if k % 2 == 0:
            r = b.cli("fetch", "310000/small", "--version", str(k), timeout=120, check=False)
            wall = (time.perf_counter() - t0) * 1000
            try:
                view = json.loads(r.stdout) if r.returncode == 0 else None
            except ValueError:
                view = None
            if view is None or view.get("status") != "done":
                fails.append(f"{variant}: small v{k} CLI fetch failed: {r.stdout[-1000:]}"
                             f"{r.stderr[-1000:]}\nB log:\n{tail(b.log_path, 20)}")
                log(fails[-1])
                continue
            cli_ms.append(wall)
        else:
            long_poll = k % 4 == 1
            try:
                view = b.api("POST", "/api/v1/fetch", {"target": "310000/small", "version": k})
                while view.get("status") not in ("done", "failed"):
                    if (time.perf_counter() - t0) > 120:
                        raise BenchError("not done within 120 s")
                    if long_poll:
                        view = b.api("GET", f"/api/v1/transfers/{view['id']}?wait_ms=30000",
                                     timeout=40)
                    else:
                        time.sleep(0.002)
                        view = b.api("GET", f"/api/v1/transfers/{view['id']}")
            except Exception as e:
                view = {"status": "failed", "error": str(e)}
            wall = (time.perf_counter() - t0) * 1000
            if view.get("status") != "done":
                fails.append(f"{variant}: small v{k} API fetch failed: {view}\nB log:\n"
                             f"{tail(b.log_path, 20)}")
                log(fails[-1])
                continue
            (api_ms if long_poll else api_poll_ms).append(wall)
        node_ms.append(view.get("total_ms"))
        for name, v in (view.get("phases") or {}).items():
            phases.setdefault(name, []).append(v)
    out = {"cli_ms": cli_ms, "api_ms": api_ms, "api_poll_ms": api_poll_ms,
           "node_total_ms": node_ms}
    for key, vals in list(out.items()):
        vals = [v for v in vals if v is not None]
        out[key.replace("_ms", "_p50_ms")] = round(pct(vals, 50), 1) if vals else None
        out[key.replace("_ms", "_p90_ms")] = round(pct(vals, 90), 1) if vals else None
    # Where the receiver's time went (TransferView.phases), median per phase.
    out["phases_p50_ms"] = {k: round(pct(v, 50), 1) for k, v in phases.items() if v}
    log(f"{variant}: small fetch p50 CLI {out['cli_p50_ms']} ms, API {out['api_p50_ms']} ms "
        f"(polling every 2 ms: {out['api_poll_p50_ms']} ms), "
        f"node total {out['node_total_p50_ms']} ms")
    log(f"{variant}: small fetch phases, p50 ms: "
        + ", ".join(f"{k.replace('_ms', '')} {v}" for k, v in out["phases_p50_ms"].items()))
    return out


def run(args):
    yrd = os.path.abspath(args.yrd)
    before = os.path.abspath(args.receiver_before) if args.receiver_before else None
    if not os.access(yrd, os.X_OK):
        raise BenchError(f"{yrd} is not an executable")
    tmp = tempfile.mkdtemp(prefix="yrd-bench-transfer-", dir=args.tmp_dir)
    log(f"work dir {tmp}")
    results = {"size_mib": args.size_mib, "runs": args.runs, "transports": {}, "failures": [],
               "yrd": yrd, "version": subprocess.run([yrd, "--version"], capture_output=True,
                                                     text=True).stdout.strip()}
    fails = results["failures"]
    results["loadavg_start"] = os.getloadavg()
    results["receiver_before"] = before
    sshd = None
    a = b = None
    try:
        # -- data
        data = os.path.join(tmp, "bench.jsonl")
        t0 = time.perf_counter()
        size, nrec = write_dataset(data, args.size_mib * MIB, seed=1)
        log(f"dataset {data}: {size} B, {nrec} records, generated in "
            f"{time.perf_counter() - t0:.1f} s")
        results.update(bytes=size, records=nrec)
        small_versions = 2 * args.small_fetches
        small_files = []
        for k in range(1, small_versions + 1):
            p = os.path.join(tmp, f"small-{k}.jsonl")
            write_dataset(p, args.small_kib * 1024, seed=1000 + k, first_serial=10_000_000 * k)
            small_files.append(p)
        results["small_bytes"] = os.path.getsize(small_files[0]) if small_files else 0
        results["disk_1mib_write_fdatasync_ms"] = round(disk_sync_ms(tmp), 2)
        log(f"disk: 1 MiB write + fdatasync median {results['disk_1mib_write_fdatasync_ms']} ms")

        # -- baselines: raw TCP and scp
        dest = os.path.join(tmp, "copy.dest")
        raw, raw_sync = [], []
        for i in range(args.runs):
            secs, sync = raw_tcp_copy(data, dest)
            os.remove(dest)
            raw.append(mbps(size, secs))
            raw_sync.append(mbps(size, secs + sync))
            log(f"raw TCP run {i + 1}: {secs:.2f} s ({raw[-1]:.0f} MB/s), +fsync {sync:.2f} s")
        results["raw_tcp_mbps"] = med(raw)
        results["raw_tcp_fsync_mbps"] = med(raw_sync)
        sshd = Sshd(tmp)
        scp = []
        if sshd.ensure_installed():
            try:
                sshd.start()
                for i in range(args.runs):
                    secs = sshd.scp(data, dest)
                    os.remove(dest)
                    scp.append(mbps(size, secs))
                    log(f"scp run {i + 1}: {secs:.2f} s ({scp[-1]:.0f} MB/s)")
                results["scp_cipher"] = sshd.cipher
            except BenchError as e:
                sshd.note = f"scp failed: {e}"
            finally:
                sshd.stop()
        if sshd.note:
            log(sshd.note)
            results["scp_note"] = sshd.note
        results["scp_mbps"] = med(scp)

        # -- nodes
        a = Node(yrd, tmp, "A", "310000")
        a.init([])
        b = Node(yrd, tmp, "B", "320000")
        b.init(["--member", a.peer_id])
        published = False
        for variant in args.transports:
            vres = {"runs": [], "before_runs": []}
            results["transports"][variant] = vres
            security = "tls" if variant == "tcp-tls" else "noise"
            port = free_port(socket.SOCK_DGRAM if variant == "quic" else socket.SOCK_STREAM)
            a_addr = listen_addrs(variant, port)
            a.configure([a_addr], [], [(b.peer_id, "bench-B")], security)
            b.configure([listen_addrs(variant, 0)], [f"{a_addr}/p2p/{a.peer_id}"],
                        [(a.peer_id, "bench-A")], security)
            a.start(os.path.join(tmp, f"A-{variant}.log"))
            try:
                if not published:
                    a.cli("schema", "publish", SCHEMA, "--id", "enterprise-licence",
                          "--version", "1.0.0")
                    for ident in ("bench", "small"):
                        offer = {"identifier": ident, "title": ident, "description": ident,
                                 "media_type": "application/jsonl",
                                 "resource_code": f"310000-{ident.upper()}-00001",
                                 "share_type": "unconditional", "share_method": "file",
                                 "update_cycle": "daily", "schema_id": "enterprise-licence",
                                 "schema_version": "1.0.0"}
                        p = os.path.join(tmp, f"offer-{ident}.json")
                        with open(p, "w") as f:
                            json.dump(offer, f)
                        a.cli("catalog", "add", p)
                    sampler = RssSampler([a.proc.pid])
                    t0 = time.perf_counter()
                    a.cli("publish", "bench", data, "--format", "jsonl", timeout=3600)
                    secs = time.perf_counter() - t0
                    rss = sampler.finish()[a.proc.pid]
                    results["publish_s"] = round(secs, 2)
                    results["publish_mbps"] = mbps(size, secs)
                    results["publish_rss_mib"] = round(rss, 1)
                    log(f"publish (validate + store) {size} B: {secs:.2f} s "
                        f"({mbps(size, secs):.0f} MB/s), peak RSS {rss:.0f} MiB")
                    t0 = time.perf_counter()
                    for p in small_files:
                        a.cli("publish", "small", p, "--format", "jsonl")
                    results["small_publish_ms"] = round(
                        (time.perf_counter() - t0) * 1000 / max(len(small_files), 1), 1)
                    published = True
                failed = False
                for i in range(1, args.runs + 1):
                    # With --receiver-before, each run fetches with both receivers, alternating
                    # which goes first, so the two are compared under the same load.
                    order = [("after", yrd)]
                    if before:
                        order = [("before", before)] + order
                        if i % 2 == 0:
                            order.reverse()
                    for label, binary in order:
                        b.yrd = binary
                        b.wipe()
                        b.start(os.path.join(tmp, f"B-{variant}-{i}-{label}.log"))
                        try:
                            sync_s = b.wait_offer("bench", 1, args.sync_timeout)
                            log(f"{variant} run {i} ({label}): B has A's catalogue after "
                                f"{sync_s:.1f} s")
                            r = fetch_big(a, b, size, args, variant, i, fails)
                            if r is None:
                                failed = True
                                break
                            vres["runs" if label == "after" else "before_runs"].append(r)
                            if i == args.runs and label == "after" and args.small_fetches:
                                b.wait_offer("small", small_versions, args.sync_timeout)
                                vres["small"] = fetch_small(a, b, args, small_versions, variant,
                                                            fails)
                        finally:
                            b.stop()
                    if failed:
                        break
                b.yrd = yrd
            except BenchError as e:
                fails.append(f"{variant}: {e}")
                log(f"{variant} failed: {e}\n--- A log tail ---\n{tail(a.log_path)}")
            finally:
                a.stop()
            rs = vres["runs"]
            for key in ("transfer_mbps", "e2e_mbps", "transfer_ms", "total_ms", "wall_ms",
                        "verify_ms"):
                vres[key] = med([r[key] for r in rs])
                if vres.get("before_runs"):
                    vres[f"before_{key}"] = med([r[key] for r in vres["before_runs"]])
            vres["rss_provider_mib"] = max((r["rss_provider_mib"] for r in rs), default=None)
            vres["rss_receiver_mib"] = max((r["rss_receiver_mib"] for r in rs), default=None)
        results["loadavg_end"] = os.getloadavg()
        return results, tmp
    finally:
        stop_all()
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def ratio(x, y):
    return x / y if x is not None and y else None


def report(res, args):
    size_mib = res.get("bytes", 0) / MIB
    print(f"transfer of {size_mib:.0f} MiB ({res.get('records')} enterprise-licence records) on "
          f"loopback, medians of {res['runs']} runs; MB/s = 10^6 B/s; {res['version']}")
    hdr = ("variant", "xfer MB/s", "e2e MB/s", "xfer÷scp", "e2e÷scp", "xfer÷raw", "e2e÷raw",
           "verify s", "RSS A MiB", "RSS B MiB", "1MiB p50/p90 ms (CLI)", "(API)")
    rows = []
    scp, raw = res.get("scp_mbps"), res.get("raw_tcp_mbps")
    for name, v in res["transports"].items():
        s = v.get("small") or {}
        for key, base in (("scp", scp), ("raw", raw)):
            v[f"transfer_vs_{key}"] = ratio(v.get("transfer_mbps"), base)
            v[f"e2e_vs_{key}"] = ratio(v.get("e2e_mbps"), base)
        rows.append((name, fmt(v.get("transfer_mbps"), ".0f"), fmt(v.get("e2e_mbps"), ".0f"),
                     fmt(v["transfer_vs_scp"], ".2f"), fmt(v["e2e_vs_scp"], ".2f"),
                     fmt(v["transfer_vs_raw"], ".2f"), fmt(v["e2e_vs_raw"], ".2f"),
                     fmt(v["verify_ms"] / 1000 if v.get("verify_ms") is not None else None, ".1f"),
                     fmt(v.get("rss_provider_mib"), ".0f"), fmt(v.get("rss_receiver_mib"), ".0f"),
                     f"{fmt(s.get('cli_p50_ms'), '.0f')} / {fmt(s.get('cli_p90_ms'), '.0f')}",
                     f"{fmt(s.get('api_p50_ms'), '.0f')} / {fmt(s.get('api_p90_ms'), '.0f')}"))
    rows.append(("scp", fmt(scp, ".0f"), fmt(scp, ".0f"), "1.00", "1.00", fmt(ratio(scp, raw), ".2f"),
                 fmt(ratio(scp, raw), ".2f"), "", "", "", "", ""))
    rows.append(("raw TCP", fmt(raw, ".0f"), fmt(raw, ".0f"), fmt(ratio(raw, scp), ".2f"),
                 fmt(ratio(raw, scp), ".2f"), "1.00", "1.00", "", "", "", "", ""))
    widths = [max(len(str(r[i])) for r in [hdr] + rows) for i in range(len(hdr))]
    for r in [hdr] + rows:
        print("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                        for i, (c, w) in enumerate(zip(r, widths))))
    print(f"publish (validate + store) of {size_mib:.0f} MiB: {fmt(res.get('publish_s'), '.1f')} s "
          f"({fmt(res.get('publish_mbps'), '.0f')} MB/s, provider peak RSS "
          f"{fmt(res.get('publish_rss_mib'), '.0f')} MiB); publish of one "
          f"{res.get('small_bytes', 0) / 1024:.0f} KiB version: {res.get('small_publish_ms')} ms")
    chunks = -(-res.get("bytes", 0) // MIB)
    sync = res.get("disk_1mib_write_fdatasync_ms") or 0
    print(f"receiver disk floor: {chunks} chunks of 1 MiB, each written + fdatasync'd (then a "
          f"journal append + fdatasync): at {sync} ms per 1 MiB write+fdatasync here that alone is "
          f"≈ {chunks * sync / 1000:.1f} s; load average at start / end: "
          f"{' '.join(f'{x:.2f}' for x in res.get('loadavg_start', ()))} / "
          f"{' '.join(f'{x:.2f}' for x in res.get('loadavg_end', ()))} "
          f"({os.cpu_count()} CPUs; other processes skew the figures)")
    print(f"raw TCP incl. one final fsync: {fmt(res.get('raw_tcp_fsync_mbps'), '.0f')} MB/s; "
          f"scp cipher {res.get('scp_cipher') or '—'}"
          + (f" ({res['scp_note']})" if res.get("scp_note") else "")
          + f"; disk 1 MiB write+fdatasync: {res.get('disk_1mib_write_fdatasync_ms')} ms")
    print("xfer = bytes_total / transfer_ms (chunks moving); e2e = bytes / wall time of `yrd fetch` "
          "(+ final digest and re-validation of every record = 'verify s', + the CLI's "
          "long poll); RSS = peak (VmHWM reset before the fetch) of provider A / receiver B over the "
          "runs; 1 MiB fetch: CLI = `yrd fetch --version k` wall, API = POST + long-poll GET "
          "(and, in turns, POST + GET every 2 ms)")
    for name, v in res["transports"].items():
        if v.get("before_runs"):
            print(f"{name}, receiver before ({res.get('receiver_before')}) vs after, same run, "
                  f"medians of {len(v['before_runs'])} / {len(v['runs'])}: `yrd fetch` wall "
                  f"{fmt(v.get('before_wall_ms'), '.0f')} / {fmt(v.get('wall_ms'), '.0f')} ms "
                  f"(e2e {fmt(v.get('before_e2e_mbps'), '.0f')} / {fmt(v.get('e2e_mbps'), '.0f')} "
                  f"MB/s, ×{fmt(ratio(v.get('before_wall_ms'), v.get('wall_ms')), '.2f')}); "
                  f"chunks moving {fmt(v.get('before_transfer_ms'), '.0f')} / "
                  f"{fmt(v.get('transfer_ms'), '.0f')} ms; after the transfer "
                  f"{fmt(v.get('before_verify_ms'), '.0f')} / {fmt(v.get('verify_ms'), '.0f')} ms")
    if res["failures"]:
        print(f"FAILURES ({len(res['failures'])}):")
        for f in res["failures"]:
            print("  " + f.splitlines()[0])
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(res, f, indent=1, ensure_ascii=False)
            f.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("yrd", help="the yrd binary (release build)")
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--transports", default=",".join(TRANSPORTS),
                    help=f"comma-separated, of {', '.join(TRANSPORTS)}")
    ap.add_argument("--json-out", help="also write the figures as JSON here")
    ap.add_argument("--small-fetches", type=int, default=20,
                    help="1 MiB fetches per transport and per method (CLI, API)")
    ap.add_argument("--small-kib", type=int, default=1024)
    ap.add_argument("--fetch-timeout", type=int, default=1800, help="seconds per big fetch")
    ap.add_argument("--sync-timeout", type=int, default=120,
                    help="seconds for B to see A's catalogue")
    ap.add_argument("--tmp-dir", help="where the work dir goes (default: the system temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (logs, data)")
    ap.add_argument("--receiver-before", metavar="YRD",
                    help="another yrd binary (e.g. the previous build) to run receiver B as "
                         "too: each run fetches with both, alternating, figures side by side")
    args = ap.parse_args()
    args.transports = [t.strip() for t in args.transports.split(",") if t.strip()]
    bad = [t for t in args.transports if t not in TRANSPORTS]
    if bad or not args.transports:
        ap.error(f"unknown transport(s) {bad}; choose from {', '.join(TRANSPORTS)}")
    if args.runs < 1 or args.size_mib < 1:
        ap.error("--runs and --size-mib must be at least 1")
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    try:
        res, _ = run(args)
    except BenchError as e:
        print(f"bench_transfer: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt as e:
        print(f"bench_transfer: interrupted ({e})", file=sys.stderr)
        sys.exit(130)
    report(res, args)
    if res["failures"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
