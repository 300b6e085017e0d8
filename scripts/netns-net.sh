#!/usr/bin/env bash
# Four `yrd run` processes as four "real hosts": each in its own Linux network namespace with its
# own loopback and one veth into a bridge (in a namespace of its own), addresses 10.77.0.1–4/24.
#
#   node 1  10.77.0.1  310000 Shanghai   ─┐
#   node 2  10.77.0.2  320000 Jiangsu    ─┤ veth ── bridge br0 (namespace …-br)
#   node 3  10.77.0.3  330000 Zhejiang   ─┤
#   node 4  10.77.0.4  340000 Anhui      ─┘
#
# Stages, each printing one PASS or FAIL line (the first FAIL stops the run, exit 1):
#   setup      namespaces, veths, bridge; the four configs (every node lists the other three as
#              members; nodes 2–4 bootstrap from node 1 only, so they find each other through it)
#   start      the four nodes answer their admin API
#   mesh       every node sees the other three as verified members (`yrd peers`)
#   exchange   node 1 publishes the enterprise-licence standard, an unconditional offer and a
#              version of it; nodes 2–4 see it; node 3 fetches it: the published records, personal fields masked
#   partition  node 4's bridge port goes down; node 1 adds a second offer; nodes 2 and 3 see it,
#              node 4 does not
#   heal       the port comes back up; node 4 sees the second offer, everyone sees three members
#              again, and node 4 fetches the dataset
# Everything (nodes, namespaces with their veths and the bridge, the work dir) is removed on exit,
# failure and interruption included; on failure the work dir (configs, logs) is kept and the end
# of each node's log is printed.
#
# Needs root (or CAP_NET_ADMIN and CAP_SYS_ADMIN for `ip netns`), iproute2 and python3. When not
# root, or when network namespaces, veths or bridges cannot be created (e.g. a container without
# CAP_NET_ADMIN), it prints SKIP and exits 0.
#
# Environment:
#   YRD=PATH          the binary (default target/debug/yrd, built if missing)
#   RECORDS=N         records in the published dataset (default 200)
#   PARTITION_HOLD=S  how long node 4 must keep not seeing the second offer (default 10)
#   HEAL_TIMEOUT=S    how long node 4 may take to see it after the heal (default 90)
#   KEEP=1            keep the work dir even on success
#   WORK_DIR=DIR      where the data dirs and logs go (default: a fresh mktemp -d)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RECORDS=${RECORDS:-200}
PARTITION_HOLD=${PARTITION_HOLD:-10}
HEAL_TIMEOUT=${HEAL_TIMEOUT:-90}
SCHEMA_FILE="$ROOT/schemas/datasets/enterprise-licence.schema.json"
T0=$(date +%s%N)

say() { printf 'netns-net: %s\n' "$*"; }
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }
secs() { printf '%d.%01d s' $(($1 / 1000)) $((($1 % 1000) / 100)); }

# ------------------------------------------------------------------------------------------------
# Can we run at all?

if [ "$(id -u)" -ne 0 ]; then
    say "SKIP: needs root (ip netns, veth, bridge)"
    exit 0
fi
if ! command -v ip >/dev/null 2>&1; then
    say "SKIP: no \`ip\` command (apt-get install iproute2)"
    exit 0
fi
PROBE="yrd-probe-$$"
if ! { ip netns add "$PROBE" &&
    ip -n "$PROBE" link add yrd-pa type veth peer name yrd-pb &&
    ip -n "$PROBE" link add yrd-pbr type bridge; } >/dev/null 2>&1; then
    ip netns del "$PROBE" >/dev/null 2>&1 || true
    say "SKIP: cannot create a network namespace with a veth pair and a bridge here (no CAP_NET_ADMIN/CAP_SYS_ADMIN, e.g. an unprivileged container)"
    exit 0
fi
ip netns del "$PROBE"
command -v python3 >/dev/null 2>&1 || { say "FAIL setup: python3 is needed (record generation, JSON)"; exit 1; }

if [ -z "${YRD:-}" ]; then
    YRD="$ROOT/target/debug/yrd"
    if [ ! -x "$YRD" ]; then
        say "building $YRD (cargo build --locked -p yrd-node --bin yrd; may wait for the cargo lock)"
        (cd "$ROOT" && cargo build --locked -p yrd-node --bin yrd)
    fi
fi
[ -x "$YRD" ] || { say "FAIL setup: YRD=$YRD is not an executable"; exit 1; }
YRD=$(cd "$(dirname "$YRD")" && pwd)/$(basename "$YRD")

# ------------------------------------------------------------------------------------------------
# State and cleanup

PREFIX="yrdnet$$"
BRNS="$PREFIX-br"
REGION=("" 310000 320000 330000 340000)
ORG=("" "上海市大数据中心" "江苏省大数据管理中心" "浙江省大数据发展管理局" "安徽省数据资源管理局")
NS=("" "$PREFIX-n1" "$PREFIX-n2" "$PREFIX-n3" "$PREFIX-n4")
PID=("" "" "" "" "")
PEER=("" "" "" "" "")
CREATED_NS=()
FAILED=1
if [ -n "${WORK_DIR:-}" ]; then
    mkdir -p "$WORK_DIR"
    WORK=$(cd "$WORK_DIR" && pwd)
else
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/yrd-netns.XXXXXX")
fi
DIR=("" "$WORK/n1" "$WORK/n2" "$WORK/n3" "$WORK/n4")
LOG=("" "$WORK/n1.log" "$WORK/n2.log" "$WORK/n3.log" "$WORK/n4.log")

cleanup() {
    local rc=$? i pid n ns
    set +e
    trap - EXIT INT TERM
    # The nodes: SIGTERM (they flush and exit 0), SIGKILL after 10 s.
    for i in 1 2 3 4; do
        [ -n "${PID[$i]}" ] && kill -TERM "${PID[$i]}" 2>/dev/null
    done
    for i in 1 2 3 4; do
        pid=${PID[$i]}
        [ -n "$pid" ] || continue
        for ((n = 0; n < 100; n++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            say "node $i (pid $pid) did not stop within 10 s of SIGTERM: SIGKILL"
            kill -KILL "$pid" 2>/dev/null
        fi
        wait "$pid" 2>/dev/null
    done
    # Anything else still running in our namespaces (e.g. a CLI call cut short), then the
    # namespaces themselves: deleting one destroys its veth end, and the bridge with its own.
    for ns in "${CREATED_NS[@]}"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            kill -KILL "$pid" 2>/dev/null
        done
        ip netns del "$ns" 2>/dev/null || say "could not delete namespace $ns"
    done
    if [ "$rc" -ne 0 ] || [ "$FAILED" -ne 0 ]; then
        say "work dir kept: $WORK"
        [ "$rc" -ne 0 ] || rc=1
    elif [ "${KEEP:-0}" = 1 ]; then
        say "work dir kept: $WORK"
    else
        rm -rf "$WORK"
    fi
    say "total $(secs "$(ms_since "$T0")")"
    exit "$rc"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT
trap 'say "terminated"; exit 143' TERM

tails() {
    local i
    for i in 1 2 3 4; do
        [ -f "${LOG[$i]}" ] || continue
        echo "----- node $i (${REGION[$i]}, ${NS[$i]}) log, last 25 lines: ${LOG[$i]}"
        tail -n 25 "${LOG[$i]}"
    done
    echo "-----"
}

pass() { say "PASS $1: $2"; }
# The records a member received equal the published ones except the standard's personal fields,
# which leave masked (docs/protocol.md, "Personal data"): same records, same order, every other
# field equal, every personal field present and changed.
same_but_masked() {
    python3 - "$SCHEMA_FILE" "$1" "$2" <<'PY'
import json, sys
schema, published, received = sys.argv[1:4]
props = json.load(open(schema)).get("properties", {})
personal = {k for k, v in props.items() if isinstance(v, dict) and v.get("x-personal-data")}
a = [json.loads(l) for l in open(published, encoding="utf-8") if l.strip()]
b = [json.loads(l) for l in open(received, encoding="utf-8") if l.strip()]
if not personal or len(a) != len(b):
    sys.exit(f"{len(a)} records published, {len(b)} received; personal fields {sorted(personal)}")
for n, (x, y) in enumerate(zip(a, b), 1):
    if set(x) != set(y):
        sys.exit(f"record {n}: fields differ")
    for k in x:
        if (k in personal) != (x[k] != y[k]) and not (k in personal and x[k] in ("", None)):
            sys.exit(f"record {n}: field {k} {'left unmasked' if k in personal else 'changed'}")
PY
}
fail() {
    say "FAIL $1: $2"
    tails
    exit 1
}

# y N ARGS...: the CLI of node N, inside its namespace (its API is on that namespace's loopback).
y() {
    local i=$1
    shift
    ip netns exec "${NS[$i]}" timeout 120 "$YRD" --data-dir "${DIR[$i]}" "$@"
}

# wait_for SECONDS COMMAND...: poll every 0.5 s until COMMAND succeeds; 1 on timeout.
wait_for() {
    local deadline=$(($(date +%s%N) + $1 * 1000000000))
    shift
    while ! "$@" >/dev/null 2>&1; do
        [ "$(date +%s%N)" -lt "$deadline" ] || return 1
        sleep 0.5
    done
}

# Verified members node N sees (entries of `yrd peers --json` with a region).
peer_count() {
    y "$1" --json peers 2>/dev/null |
        python3 -c 'import json,sys; print(sum(1 for p in json.load(sys.stdin) if p.get("region")))' 2>/dev/null ||
        echo "?"
}
sees_peers() { [ "$(peer_count "$1")" = "$2" ]; }

# sees_offer N DATASET [MIN_VERSION]: node N's catalogue search holds node 1's DATASET (with a
# latest version >= MIN_VERSION when given).
sees_offer() {
    y "$1" --json catalog search 2>/dev/null | python3 -c '
import json, sys
publisher, dataset, min_version = sys.argv[1], sys.argv[2], int(sys.argv[3])
hits = json.load(sys.stdin)
hits = hits if isinstance(hits, list) else hits.get("hits", [])
ok = any(h.get("publisher") == publisher
         and h.get("entry", {}).get("offer", {}).get("identifier") == dataset
         and (h.get("entry", {}).get("latest_version") or 0) >= min_version
         for h in hits)
sys.exit(0 if ok else 1)' "${PEER[1]}" "$2" "${3:-0}"
}

# reach N IP: a TCP connection from namespace N to IP:7401 opens within 2 s.
reach() {
    ip netns exec "${NS[$1]}" timeout 2 bash -c "exec 3<>/dev/tcp/$2/7401" 2>/dev/null
}

say "yrd $("$YRD" --version 2>/dev/null | awk '{print $2}') ($YRD), work dir $WORK"

# ------------------------------------------------------------------------------------------------
# Stage: setup

t=$(date +%s%N)
{
    ip netns add "$BRNS" && CREATED_NS+=("$BRNS") &&
        ip -n "$BRNS" link set lo up &&
        ip -n "$BRNS" link add br0 type bridge &&
        ip -n "$BRNS" link set br0 up
} || fail setup "cannot create the bridge namespace $BRNS"
for i in 1 2 3 4; do
    {
        ip netns add "${NS[$i]}" && CREATED_NS+=("${NS[$i]}") &&
            ip -n "${NS[$i]}" link set lo up &&
            ip link add eth0 netns "${NS[$i]}" type veth peer name "port$i" netns "$BRNS" &&
            ip -n "$BRNS" link set "port$i" master br0 &&
            ip -n "$BRNS" link set "port$i" up &&
            ip -n "${NS[$i]}" addr add "10.77.0.$i/24" dev eth0 &&
            ip -n "${NS[$i]}" link set eth0 up
    } || fail setup "cannot set up namespace ${NS[$i]} (veth eth0 <-> $BRNS/port$i, 10.77.0.$i/24)"
done

for i in 1 2 3 4; do
    out=$("$YRD" --json init --data-dir "${DIR[$i]}" --region "${REGION[$i]}" --name "${ORG[$i]}" \
        --listen "/ip4/10.77.0.$i/tcp/7401" --api 127.0.0.1:7400 2>&1) ||
        fail setup "yrd init of node $i: $out"
    PEER[$i]=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["peer_id"])' <<<"$out") ||
        fail setup "no peer_id in the output of yrd init --json: $out"
done
# Every node lists the three others as members; nodes 2–4 bootstrap from node 1.
for i in 1 2 3 4; do
    members=()
    for j in 1 2 3 4; do
        [ "$j" = "$i" ] || members+=("${PEER[$j]}" "${ORG[$j]}")
    done
    bootstrap=""
    [ "$i" = 1 ] || bootstrap="/ip4/10.77.0.1/tcp/7401/p2p/${PEER[1]}"
    python3 - "${DIR[$i]}/yrd.toml" "$bootstrap" "${members[@]}" <<'EOF' || fail setup "cannot rewrite ${DIR[$i]}/yrd.toml"
import json, sys
path, bootstrap, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
text = open(path, encoding="utf-8").read()
old_b = "\nbootstrap = []\n"
# `yrd init` writes an empty [federation] table (no members, no charter).
old_m = next((m for m in ("\n[federation]\nmembers = []\n", "\n[federation]\n") if m in text), None)
if old_b not in text or old_m is None:
    sys.exit(f"{path}: unexpected layout (no empty bootstrap / [federation])")
text = text.replace(old_b, "\nbootstrap = [%s]\n" % (json.dumps(bootstrap) if bootstrap else ""))
members = "".join('\n[[federation.members]]\npeer_id = %s\nname = %s\n'
                  % (json.dumps(p), json.dumps(n, ensure_ascii=False))
                  for p, n in zip(rest[::2], rest[1::2]))
text = text.replace(old_m, "\n[federation]" + members + "\n", 1)
open(path, "w", encoding="utf-8").write(text)
EOF
    out=$("$YRD" config check "${DIR[$i]}/yrd.toml" 2>&1) || fail setup "config of node $i refused: $out"
done
pass setup "namespaces ${NS[1]}..${NS[4]} on bridge $BRNS/br0, peers ${PEER[1]: -6} ${PEER[2]: -6} ${PEER[3]: -6} ${PEER[4]: -6} ($(secs "$(ms_since "$t")"))"

# ------------------------------------------------------------------------------------------------
# Stage: start

t=$(date +%s%N)
for i in 1 2 3 4; do
    ip netns exec "${NS[$i]}" env NO_COLOR=1 "$YRD" --data-dir "${DIR[$i]}" run >"${LOG[$i]}" 2>&1 &
    PID[$i]=$!
done
for i in 1 2 3 4; do
    if ! wait_for 60 y "$i" health; then
        kill -0 "${PID[$i]}" 2>/dev/null || fail start "node $i exited at start"
        fail start "node $i does not answer \`yrd health\` within 60 s"
    fi
done
for i in 1 2 3 4; do
    reach "$i" "10.77.0.$((i % 4 + 1))" || fail start "namespace $i cannot open TCP to 10.77.0.$((i % 4 + 1)):7401"
done
pass start "4 nodes answer their API, every namespace reaches the next one over the bridge ($(secs "$(ms_since "$t")"))"

# ------------------------------------------------------------------------------------------------
# Stage: mesh

t=$(date +%s%N)
for i in 1 2 3 4; do
    wait_for 60 sees_peers "$i" 3 ||
        fail mesh "node $i sees $(peer_count "$i") verified members after 60 s, not 3"
done
pass mesh "every node sees the 3 others with their region ($(secs "$(ms_since "$t")"))"

# ------------------------------------------------------------------------------------------------
# Stage: exchange

t=$(date +%s%N)
out=$(y 1 schema publish "$SCHEMA_FILE" --id enterprise-licence --version 1.0.0 2>&1) ||
    fail exchange "schema publish on node 1: $out"
cat >"$WORK/offer-1.json" <<'EOF'
{"identifier": "ns-licences", "title": "营业执照", "description": "netns", "media_type": "application/jsonl", "resource_code": "310000-NS-00001", "share_type": "unconditional", "share_method": "file", "update_cycle": "daily", "schema_id": "enterprise-licence", "schema_version": "1.0.0"}
EOF
out=$(y 1 catalog add "$WORK/offer-1.json" 2>&1) || fail exchange "catalog add on node 1: $out"
# Valid records (GB 32100 USCC check characters, GB 11643 ID numbers) from the benchmark's
# generator.
PYTHONDONTWRITEBYTECODE=1 python3 - "$ROOT/scripts" "$WORK/licences.jsonl" "$RECORDS" <<'EOF' ||
import random, sys
sys.path.insert(0, sys.argv[1])
import bench_transfer as b
rng = random.Random(7701)
with open(sys.argv[2], "w", encoding="utf-8") as f:
    for n in range(int(sys.argv[3])):
        region, rest = b.record_tail(rng)
        f.write('{"uscc":"%s",%s\n' % (b.uscc_for(region, n), rest))
EOF
    fail exchange "cannot generate records"
out=$(y 1 publish ns-licences "$WORK/licences.jsonl" 2>&1) || fail exchange "publish on node 1: $out"
say "node 1: $out"
for i in 2 3 4; do
    wait_for 60 sees_offer "$i" ns-licences 1 ||
        fail exchange "node $i does not see 310000/ns-licences v1 in its catalogue within 60 s"
done
out=$(y 3 fetch 310000/ns-licences --out "$WORK/fetched-3.jsonl" 2>&1) ||
    fail exchange "fetch on node 3: $out"
say "node 3: $(tail -n 1 <<<"$out")"
same_but_masked "$WORK/licences.jsonl" "$WORK/fetched-3.jsonl" ||
    fail exchange "the records node 3 fetched are not the published ones with personal fields masked"
pass exchange "nodes 2-4 see ns-licences v1; node 3 fetched $(wc -c <"$WORK/fetched-3.jsonl") bytes: the published records, personal fields masked ($(secs "$(ms_since "$t")"))"

# ------------------------------------------------------------------------------------------------
# Stage: partition

t=$(date +%s%N)
ip -n "$BRNS" link set port4 down || fail partition "cannot take $BRNS/port4 down"
if reach 4 10.77.0.1; then fail partition "namespace 4 still reaches 10.77.0.1 with its port down"; fi
reach 2 10.77.0.1 || fail partition "namespace 2 no longer reaches 10.77.0.1"
cat >"$WORK/offer-2.json" <<'EOF'
{"identifier": "ns-licences-partition", "title": "营业执照（分区期间）", "description": "netns partition", "media_type": "application/jsonl", "resource_code": "310000-NS-00002", "share_type": "unconditional", "share_method": "file", "update_cycle": "daily", "schema_id": "enterprise-licence", "schema_version": "1.0.0"}
EOF
out=$(y 1 catalog add "$WORK/offer-2.json" 2>&1) || fail partition "catalog add on node 1: $out"
added=$(date +%s%N)
for i in 2 3; do
    wait_for 30 sees_offer "$i" ns-licences-partition ||
        fail partition "node $i does not see the second offer within 30 s of its addition"
done
seen=$(ms_since "$added")
hold_until=$(($(date +%s%N) + PARTITION_HOLD * 1000000000))
while [ "$(date +%s%N)" -lt "$hold_until" ]; do
    if sees_offer 4 ns-licences-partition; then
        fail partition "node 4 sees the second offer although its link is down"
    fi
    sleep 0.5
done
pass partition "port4 down: nodes 2 and 3 see the second offer $(secs "$seen") after it was added, node 4 still does not $(secs "$(ms_since "$added")") after (node 4 counts $(peer_count 4) members, node 1 counts $(peer_count 1)) ($(secs "$(ms_since "$t")"))"

# ------------------------------------------------------------------------------------------------
# Stage: heal

t=$(date +%s%N)
ip -n "$BRNS" link set port4 up || fail heal "cannot bring $BRNS/port4 up"
wait_for 15 reach 4 10.77.0.1 || fail heal "namespace 4 does not reach 10.77.0.1 within 15 s of port4 up"
wait_for "$HEAL_TIMEOUT" sees_offer 4 ns-licences-partition ||
    fail heal "node 4 does not see the second offer within $HEAL_TIMEOUT s of the heal (it counts $(peer_count 4) members)"
offer_ms=$(ms_since "$t")
for i in 1 2 3 4; do
    wait_for 90 sees_peers "$i" 3 ||
        fail heal "node $i sees $(peer_count "$i") verified members 90 s after the heal, not 3"
done
peers_ms=$(ms_since "$t")
out=$(y 4 fetch 310000/ns-licences --out "$WORK/fetched-4.jsonl" 2>&1) || fail heal "fetch on node 4: $out"
same_but_masked "$WORK/licences.jsonl" "$WORK/fetched-4.jsonl" ||
    fail heal "the records node 4 fetched are not the published ones with personal fields masked"
pass heal "port4 up: node 4 sees the second offer after $(secs "$offer_ms"), all four see 3 members after $(secs "$peers_ms"), node 4 fetched ns-licences, personal fields masked ($(secs "$(ms_since "$t")"))"

FAILED=0
say "PASS: all stages"
