#!/usr/bin/env python3
"""Seeds fuzz/corpus/TARGET from the repository's own data: the JCS and signature vectors, the
evidence bundle vector, the dataset standards, the example configs and the sim scenarios.

Usage: python3 fuzz/seed.py [CORPUS_DIR]   (default: fuzz/corpus next to this file)

Idempotent: each seed is named by the hash of its bytes, so running it again adds nothing, and
what the fuzzer added to the corpus stays. Targets whose first byte(s) select a mode get each
seed once per mode.
"""
import csv
import glob
import hashlib
import io
import json
import os
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "fuzz", "corpus")

# Order of yrd_node::samples::STANDARDS (the records target picks one by index).
STANDARDS = [
    "enterprise-licence",
    "social-insurance-contribution",
    "medical-insurance-settlement",
    "housing-provident-fund",
    "electronic-licence-index",
    "elderly-care-subsidy",
]


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


def frame(payload):
    return struct.pack(">I", len(payload)) + payload


# --- canonical JSON and signed documents -------------------------------------------------------
jcs = [read(p) for p in sorted(glob.glob(os.path.join(ROOT, "schemas/vectors/jcs/input/*.json")))]
for text in jcs:
    put("canonical", text)
vectors = json.loads(read("schemas/vectors/signatures.json"))
bundle_text = read("schemas/vectors/evidence-bundle.json")
bundle = json.loads(bundle_text)
envelopes = [v["envelope"] for v in vectors if isinstance(v.get("envelope"), dict)]
envelopes.append(bundle["head"])
envelopes.extend(bundle["documents"])
envelopes.extend(bundle["parties"])
envelopes.extend(w["cosignature"] for w in bundle["witnesses"])
for env in envelopes:
    text = json.dumps(env, ensure_ascii=False)
    put("canonical", text)
    put("signed", b"\x00" + text.encode())
    if isinstance(env.get("document"), dict):
        put("signed", b"\x01" + json.dumps(env["document"], ensure_ascii=False).encode())
for v in vectors:
    put("canonical", v["canonical"])

# --- evidence bundles ---------------------------------------------------------------------------
put("bundle", bundle_text)
put("bundle", json.dumps(bundle, ensure_ascii=False, separators=(",", ":")))
small = dict(bundle, entries=bundle["entries"][:1])
put("bundle", json.dumps(small, ensure_ascii=False))

# --- fetch messages and frames --------------------------------------------------------------------
manifests = [e for e in envelopes if e.get("type") == "manifest"]
messages = [
    {"dataset": "sh-medical-settlement"},
    {"dataset": "js-social-insurance", "version": 3, "grant": "e5b02630e1815ef797a1f20f70a064c1"},
    {"kind": "refused", "code": "grant-invalid", "message": "grant e5b0 was revoked: 项目结束"},
    {"kind": "refused", "code": "not-found", "message": ""},
    {"ranges": []},
    {"ranges": [[0, 3], [5, 6], [7, 9]]},
    {"ranges": [[0, 4294967295]]},
]
for m in manifests:
    messages.append(
        {
            "kind": "ready",
            "manifest": m,
            "chunk_table": {"chunk_size": 1048576, "size": 3, "chunks": ["00" * 32]},
        }
    )
for m in messages:
    payload = json.dumps(m, ensure_ascii=False).encode()
    put("fetch_messages", b"\x00\x10" + payload)
    put("fetch_messages", b"\xff\xff" + payload)
    put("frames", bytes([5, 7]) + frame(payload) + frame(b"\x00\x00\x00\x01abc"))
put("frames", b"\x04\x01" + frame(b"") + frame(b"ab") + b"\x00\x00")
put("frames", b"\x02\xff" + struct.pack(">I", 1 << 30))

# --- query messages -------------------------------------------------------------------------------
query = {
    "nonce": "0123456789abcdef0123456789abcdef",
    "dataset": "sh-enterprise-licence",
    "mode": "lookup",
    "key": [{"field": "uscc", "value": "91310000MA1FL8TQ3Y"}],
    "fields": ["uscc", "name"],
    "purpose": "跨省通办: 核验营业执照",
    "legal_basis": "优化营商环境条例",
    "grant": "e5b02630e1815ef797a1f20f70a064c1",
}
verify = dict(query, mode="verify", fields=[])
del verify["grant"]
answer = {
    "type": "query-answer",
    "version": 1,
    "document": {
        "provider": "12D3KooWA",
        "caller": "12D3KooWB",
        "dataset": "sh-enterprise-licence",
        "version": 3,
        "data_digest": "ab" * 32,
        "mode": "lookup",
        "query_digest": "cd" * 32,
        "found": True,
        "record_count": 1,
        "fields": ["uscc", "name"],
        "result_digest": "ef" * 32,
        "answered_at": "2026-12-07T14:00:00Z",
    },
    "signer": envelopes[0]["signer"],
    "signature": envelopes[0]["signature"],
}
response = {"kind": "answer", "answer": answer, "records": [{"uscc": "91310000MA1FL8TQ3Y", "name": "某*"}]}
refused = {"kind": "refused", "code": "quota-exceeded", "message": "100 calls today"}
for m in [
    query,
    verify,
    [query, verify],
    [query] * 17,
    [],
    response,
    refused,
    {"kind": "responses", "responses": [response, refused]},
    {"kind": "refused", "code": "busy", "message": "256 queries being answered"},
]:
    put("query_messages", json.dumps(m, ensure_ascii=False))

# --- charters -------------------------------------------------------------------------------------
charter_vectors = json.loads(read("schemas/vectors/charter.json"))
charters = []
for case in charter_vectors["cases"]:
    charters.extend(case["held"])
    charters.append(case["offered"])
charters.extend(json.loads(read("schemas/vectors/evidence-bundle-charter.json"))["charters"])
for c in charters:
    put("charter", json.dumps(c, ensure_ascii=False))
    put("charter", json.dumps(c, ensure_ascii=False, indent=2) + "\n")

# --- records ---------------------------------------------------------------------------------------
EXAMPLES = {
    "^[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}$": "91310000MA1FL8TQ3Y",
    "^[1-9][0-9]{5}(18|19|20)[0-9]{2}(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9X]$": "11010519491231002X",
    "^([0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}|[1-9][0-9]{16}[0-9X])$": "11010519491231002X",
    "^3[1-4][0-9]{4}$": "310101",
    "^3[1-4][0-9]{2}00$": "320100",
    "^(19|20)[0-9]{2}(0[1-9]|1[0-2])$": "202506",
    "^1[3-9][0-9]{9}$": "13800138000",
    "^[0-9]{12}$": "123456789012",
    "^YL[0-9]{20}$": "YL" + "0" * 20,
    "^GJJ[0-9]{22}$": "GJJ" + "0" * 22,
    "^SI[0-9]{22}$": "SI" + "0" * 22,
    "^YD[0-9]{24}$": "YD" + "0" * 24,
    "^H[0-9]{11}$": "H" + "0" * 11,
    "^[A-Z][0-9]{2}(\\.[0-9]{1,2})?$": "E11.9",
    "^[0-9a-f]{64}$": "ab" * 32,
    "^[A-Z]{2,8}\\.[0-9A-HJ-NPQRTUWXY]{18}\\.[0-9]{8}\\.[0-9]{3}$": "YYZZ.91310000MA1FL8TQ3Y.20250630.001",
}


def example(prop):
    if "enum" in prop:
        return prop["enum"][0]
    t = prop.get("type")
    t = t[0] if isinstance(t, list) else t
    if t == "number":
        return max(prop.get("minimum", 0), 0.05) if prop.get("maximum") else 1234.5
    if t == "integer":
        return 1
    if t == "boolean":
        return True
    fmt = prop.get("format")
    if fmt == "date":
        return "2025-06-30"
    if fmt == "date-time":
        return "2025-06-30T08:00:00Z"
    if "pattern" in prop:
        return EXAMPLES.get(prop["pattern"], "x")
    return "上海市示例" * max(1, prop.get("minLength", 1) // 5)


for i, sid in enumerate(STANDARDS):
    schema = json.loads(read(f"schemas/datasets/{sid}.schema.json"))
    props = schema["properties"]
    record = {k: example(p) for k, p in props.items()}
    nulls = {k: (None if isinstance(p.get("type"), list) else v) for (k, p), v in zip(props.items(), record.values())}
    jsonl = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in (record, nulls))
    put("records", bytes([2 * i]) + jsonl.encode())
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(props.keys())
    for r in (record, nulls):
        w.writerow("" if v is None else ("true" if v is True else v) for v in r.values())
    put("records", bytes([2 * i + 1]) + out.getvalue().encode())

# --- scenarios and configs ----------------------------------------------------------------------
for p in sorted(glob.glob(os.path.join(ROOT, "scripts/scenarios/*.toml"))):
    text = read(p).encode()
    put("scenario", b"\x00" + text)
    put("scenario", b"\x02" + text)
for p in sorted(glob.glob(os.path.join(ROOT, "config/*.toml"))):
    put("config", read(p))
