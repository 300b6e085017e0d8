#!/usr/bin/env python3
"""Independent verifier of YRD evidence bundles (yrd-evidence/1).

Written from docs/evidence.md alone, without reading or calling the node's code, so that an
auditor can check a bundle with a second implementation.

Usage:  verify_evidence.py [--genesis DIGEST] BUNDLE.json

With --genesis (your federation's genesis digest, obtained out of band), a bundle that carries no
charter chain, or one starting from another genesis, does not verify.

Exit 0 and print the account (the same lines as `yrd verify`) if the bundle verifies; exit 1 and
print `error: BUNDLE.json: DOES NOT VERIFY: <what failed>` on stderr if it does not; exit 2 on a
usage error or when a needed Python module is missing.

Needs Python 3.8+, the `cryptography` package (ed25519; Debian: python3-cryptography) and the
`blake3` package (`pip install blake3`); everything else is the standard library.
"""

import datetime
import hashlib
import json
import re
import sys
import unicodedata

EXIT_FAILED = 1
EXIT_USAGE = 2


def _require_modules():
    missing = []
    try:
        import blake3  # noqa: F401
    except ImportError:
        missing.append(("blake3", "BLAKE3 digests of signed documents",
                        "pip install blake3"))
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: F401
    except ImportError:
        missing.append(("cryptography", "ed25519 signatures",
                        "apt-get install python3-cryptography, or pip install cryptography"))
    if missing:
        for name, purpose, how in missing:
            print(f"error: the Python module '{name}' is missing (needed for {purpose}); "
                  f"install it with: {how}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


class Fail(Exception):
    """The bundle does not verify; the message names what failed."""


# ------------------------------------------------------------------------------------------
# Reading JSON (docs/evidence.md, "Canonical JSON": what to refuse when parsing)

def _no_duplicates(pairs):
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise Fail(f"duplicate member name {key!r}")
        obj[key] = value
    return obj


def _parse_constant(name):
    raise Fail(f"{name} is not JSON")


def _parse_float(text):
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise Fail(f"number {text} is outside the double range")
    return value


MAX_EXACT = 2 ** 53 - 1


def _parse_int(text):
    # -0 is the double -0, not an integer.
    if text == "-0":
        return -0.0
    value = int(text)
    # Beyond 2^53-1 a double cannot hold every integer: no exact canonical form (step 1).
    if abs(value) > MAX_EXACT:
        raise Fail(f"integer {text} is beyond 2^53-1")
    return value


def _check_strings(value, where="bundle"):
    """Refuses unpaired surrogates (JSON escapes like "\\ud800" that name no character)."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            if any(0xD800 <= ord(c) <= 0xDFFF for c in v):
                raise Fail(f"a string holds an unpaired surrogate escape: {v!r}")
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())


def read_json(path):
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise Fail(f"cannot read: {e.strerror or e}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Fail(f"not UTF-8 (byte {e.start})")
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates,
                           parse_constant=_parse_constant, parse_float=_parse_float,
                           parse_int=_parse_int)
    except Fail as e:
        raise Fail(f"not a bundle: {e}")
    except (ValueError, RecursionError) as e:
        raise Fail(f"not JSON: {e}")
    _check_strings(value)
    return value


# ------------------------------------------------------------------------------------------
# RFC 8785 canonical JSON

MAX_SAFE = 2 ** 53


def es_number(f):
    """ECMAScript Number.prototype.toString of a finite double."""
    if f != f or f in (float("inf"), float("-inf")):
        raise Fail(f"number {f} has no canonical JSON form")
    if f == 0:
        return "0"
    sign = "-" if f < 0 else ""
    r = repr(abs(f))  # shortest round-tripping digits, correctly rounded
    mantissa, _, exp = r.partition("e")
    exponent = int(exp) if exp else 0
    int_part, _, frac_part = mantissa.partition(".")
    digits = int_part + frac_part
    point = len(int_part) + exponent  # value = 0.DIGITS x 10^point
    stripped = digits.lstrip("0")
    point -= len(digits) - len(stripped)
    s = stripped.rstrip("0")
    k, n = len(s), point
    if k <= n <= 21:
        out = s + "0" * (n - k)
    elif 0 < n <= 21:
        out = s[:n] + "." + s[n:]
    elif -6 < n <= 0:
        out = "0." + "0" * (-n) + s
    else:
        e = n - 1
        e_text = ("+" if e > 0 else "-") + str(abs(e))
        out = (s if k == 1 else s[0] + "." + s[1:]) + "e" + e_text
    return sign + out


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
            "\t": "\\t"}


def canon_string(s):
    out = ['"']
    for c in s:
        if c in _ESCAPES:
            out.append(_ESCAPES[c])
        elif ord(c) < 0x20:
            out.append("\\u%04x" % ord(c))
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def canon(v):
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        if abs(v) <= MAX_SAFE:
            return str(v)
        try:
            return es_number(float(v))
        except OverflowError:
            raise Fail(f"integer {v} is outside the double range")
    if isinstance(v, float):
        return es_number(v)
    if isinstance(v, str):
        return canon_string(v)
    if isinstance(v, list):
        return "[" + ",".join(canon(x) for x in v) + "]"
    if isinstance(v, dict):
        members = sorted(v.items(), key=lambda kv: kv[0].encode("utf-16-be"))
        return "{" + ",".join(canon_string(k) + ":" + canon(x) for k, x in members) + "}"
    raise Fail(f"value {v!r} is not JSON")


def canon_bytes(v):
    return canon(v).encode("utf-8")


# ------------------------------------------------------------------------------------------
# Shapes (docs/evidence.md, "Format")

REGIONS = {
    "310000": ("上海市", "Shanghai"), "320000": ("江苏省", "Jiangsu"),
    "330000": ("浙江省", "Zhejiang"), "340000": ("安徽省", "Anhui"),
    "320100": ("南京市", "Nanjing"), "320200": ("无锡市", "Wuxi"),
    "320300": ("徐州市", "Xuzhou"), "320400": ("常州市", "Changzhou"),
    "320500": ("苏州市", "Suzhou"), "320600": ("南通市", "Nantong"),
    "320700": ("连云港市", "Lianyungang"), "320800": ("淮安市", "Huai'an"),
    "320900": ("盐城市", "Yancheng"), "321000": ("扬州市", "Yangzhou"),
    "321100": ("镇江市", "Zhenjiang"), "321200": ("泰州市", "Taizhou (Jiangsu)"),
    "321300": ("宿迁市", "Suqian"), "330100": ("杭州市", "Hangzhou"),
    "330200": ("宁波市", "Ningbo"), "330300": ("温州市", "Wenzhou"),
    "330400": ("嘉兴市", "Jiaxing"), "330500": ("湖州市", "Huzhou"),
    "330600": ("绍兴市", "Shaoxing"), "330700": ("金华市", "Jinhua"),
    "330800": ("衢州市", "Quzhou"), "330900": ("舟山市", "Zhoushan"),
    "331000": ("台州市", "Taizhou (Zhejiang)"), "331100": ("丽水市", "Lishui"),
    "340100": ("合肥市", "Hefei"), "340200": ("芜湖市", "Wuhu"),
    "340300": ("蚌埠市", "Bengbu"), "340400": ("淮南市", "Huainan"),
    "340500": ("马鞍山市", "Ma'anshan"), "340600": ("淮北市", "Huaibei"),
    "340700": ("铜陵市", "Tongling"), "340800": ("安庆市", "Anqing"),
    "341000": ("黄山市", "Huangshan"), "341100": ("滁州市", "Chuzhou"),
    "341200": ("阜阳市", "Fuyang"), "341300": ("宿州市", "Suzhou (Anhui)"),
    "341500": ("六安市", "Lu'an"), "341600": ("亳州市", "Bozhou"),
    "341700": ("池州市", "Chizhou"), "341800": ("宣城市", "Xuancheng"),
}

KINDS = {
    "schema-published", "catalogue-issued", "dataset-published", "request-sent",
    "request-received", "grant-issued", "denial-issued", "grant-revoked", "grant-received",
    "denial-received", "revocation-received", "delivery-served", "dataset-received",
    "receipt-received", "refused", "witness-alarm", "alarm-resolved", "query-sent",
    "query-answered", "query-refused", "charter-applied", "charter-equivocation",
}
QUERY_MODES = {"verify", "lookup"}

HEX = set("0123456789abcdef")


def is_str(v):
    return isinstance(v, str)


def is_u64(v):
    return type(v) is int and 0 <= v <= MAX_EXACT


def is_region(v):
    return isinstance(v, str) and v in REGIONS


def is_str_list(v):
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def hex_bytes(v, n, what):
    if not isinstance(v, str) or len(v) != 2 * n or not set(v) <= HEX:
        raise Fail(f"{what}: expected {2 * n} lowercase hex characters, found {v!r}")
    return bytes.fromhex(v)


def check_object(v, what, required, optional=None):
    """`required` and `optional` map member names to (test, description)."""
    optional = optional or {}
    if not isinstance(v, dict):
        raise Fail(f"{what}: expected an object")
    for name in v:
        if name not in required and name not in optional:
            raise Fail(f"{what}: unknown member {name!r}")
    for name, (test, desc) in required.items():
        if name not in v:
            raise Fail(f"{what}: member {name!r} is missing")
        if not test(v[name]):
            raise Fail(f"{what}: member {name!r} must be {desc}")
    for name, (test, desc) in optional.items():
        if name in v:
            if v[name] is None:
                raise Fail(f"{what}: member {name!r} is null (absent members must be omitted)")
            if not test(v[name]):
                raise Fail(f"{what}: member {name!r} must be {desc}")
    return v


STR = (is_str, "a string")
U64 = (is_u64, "an integer in 0..2^53-1")
U32 = (lambda v: is_u64(v) and v < 2 ** 32, "an integer in 0..2^32-1")
U53 = U64
SESSION_ENDS = {"closed", "reset", "stalled", "bad-request", "grant-invalid", "shutdown",
                "internal"}
REGION = (is_region, "a region code of the table (a six-character string)")
OBJ = (lambda v: isinstance(v, dict), "an object")
ARR = (lambda v: isinstance(v, list), "an array")

TREE_HEAD = {"log": STR, "size": U64, "root": STR, "time": STR}
COSIGNATURE = {"log": STR, "size": U64, "root": STR, "witness": STR, "time": STR}
NODE_INFO = {"peer_id": STR, "region": REGION, "organisation": STR,
             "addresses": (is_str_list, "an array of strings"), "issued_at": STR,
             "software": STR}
RECORD_REQUIRED = {"seq": U64, "kind": (lambda v: v in KINDS if is_str(v) else False,
                                        "one of the record kinds"),
                   "time": STR, "actor": STR, "actor_region": REGION, "documents": ARR}
RECORD_OPTIONAL = {"counterparty": STR, "counterparty_region": REGION, "dataset": STR,
                   "version": U64, "grant": STR, "fields": STR, "purpose": STR,
                   "legal_basis": STR, "data_digest": STR, "cause": STR,
                   "chunks_sent": U32, "chunk_count": U32, "bytes_sent": U53,
                   "ended": (lambda v: v in SESSION_ENDS if is_str(v) else False,
                             "one of the session ends"),
                   "query_mode": (lambda v: v in QUERY_MODES if is_str(v) else False,
                                  "one of the query modes"),
                   "key_hash": STR, "found": (lambda v: isinstance(v, bool), "true or false"),
                   "client": STR, "prev_about_dataset": U64}
DOC_REF = {"type": STR, "digest": STR}
DATASET_HEAD = {"log": STR, "dataset": STR, "size": U64, "root": STR, "latest": U64,
                "time": STR}


def valid_type_name(name):
    if not isinstance(name, str) or not name or len(name.encode("utf-8")) > 64:
        return False
    return all(part and all(c in "abcdefghijklmnopqrstuvwxyz0123456789" for c in part)
               for part in name.split("-"))


def check_envelope(v, what, doc_type=None, document_shape=None):
    check_object(v, what, {"type": STR, "version": (lambda x: type(x) is int, "an integer"),
                           "document": OBJ, "signer": STR, "signature": STR})
    if not valid_type_name(v["type"]):
        raise Fail(f"{what}: invalid document type name {v['type']!r}")
    if doc_type is not None and v["type"] != doc_type:
        raise Fail(f"{what}: expected a {doc_type!r} envelope, found {v['type']!r}")
    if v["version"] != 1:
        raise Fail(f"{what}: envelope version {v['version']}, expected 1")
    if document_shape is not None:
        check_object(v["document"], f"{what} document", document_shape)
    return v


# ------------------------------------------------------------------------------------------
# Ed25519, strict (docs/evidence.md, "Signatures")

P = 2 ** 255 - 19
L = 2 ** 252 + 27742317777372353535851937790883648493
D = (-121665 * pow(121666, P - 2, P)) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)


def decode_point(b):
    """RFC 8032 5.1.3 decoding, y reduced modulo p, x = 0 with the sign bit accepted."""
    y = (int.from_bytes(b, "little") & ((1 << 255) - 1)) % P
    sign = b[31] >> 7
    u = (y * y - 1) % P
    v = (D * y * y + 1) % P
    x = (u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P)) % P
    vxx = v * x * x % P
    if vxx == u:
        pass
    elif vxx == (-u) % P:
        x = x * SQRT_M1 % P
    else:
        return None
    if (x & 1) != sign:
        x = (-x) % P
    return (x, y)


def point_add(p1, p2):
    (x1, y1), (x2, y2) = p1, p2
    t = D * x1 * x2 * y1 * y2 % P
    x3 = (x1 * y2 + y1 * x2) * pow(1 + t, P - 2, P) % P
    y3 = (y1 * y2 + x1 * x2) * pow(1 - t, P - 2, P) % P
    return (x3, y3)


def small_order(point):
    q = point
    for _ in range(3):
        q = point_add(q, q)
    return q == (0, 1)


def ed25519_ok(key, sig, message):
    """Strict ed25519 verification (docs/evidence.md, "Signatures") of 32-byte `key` and
    64-byte `sig` over `message`, as a yes or no."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    a = decode_point(key)
    if a is None or small_order(a) or int.from_bytes(sig[32:], "little") >= L:
        return False
    r = decode_point(sig[:32])
    if r is None or small_order(r):
        return False
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(sig, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def verify_signature(env, what):
    """Checks the envelope's ed25519 signature over "yrd/v1/" + type + canonical(document)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    key = hex_bytes(env["signer"], 32, f"{what} signer")
    sig = hex_bytes(env["signature"], 64, f"{what} signature")
    a = decode_point(key)
    if a is None:
        raise Fail(f"{what}: signer is not an ed25519 public key (not a curve point)")
    if small_order(a):
        raise Fail(f"{what}: signer is a weak (small-order) ed25519 key")
    if int.from_bytes(sig[32:], "little") >= L:
        raise Fail(f"{what}: signature is not canonical (S is not below the group order)")
    r = decode_point(sig[:32])
    if r is None or small_order(r):
        raise Fail(f"{what}: signature does not verify for document type {env['type']!r} "
                   f"(its R is not a usable curve point)")
    message = b"yrd/v1/" + env["type"].encode("utf-8") + canon_bytes(env["document"])
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(sig, message)
    except (InvalidSignature, ValueError):
        raise Fail(f"{what}: signature does not verify for document type {env['type']!r}")


def envelope_digest(env):
    import blake3
    return blake3.blake3(canon_bytes(env)).hexdigest()


# ------------------------------------------------------------------------------------------
# Peer ids (docs/evidence.md, "Peer ids")

B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


# ------------------------------------------------------------------------------------------
# The federation charter (docs/evidence.md, step 9; docs/charter.md)

MAX_BUNDLE_CHARTERS = 64
MAX_CHARTER_BYTES = 1 << 20
USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28]
RFC3339 = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?"
                     r"([Zz]|[+-]\d{2}:\d{2})$")


def parse_time(text):
    """An RFC 3339 time as a comparable (UTC seconds, fraction) pair, or None."""
    m = RFC3339.match(text) if isinstance(text, str) else None
    if m is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    try:
        t = datetime.datetime(year, month, day, hour, minute, second,
                              tzinfo=datetime.timezone.utc)
    except ValueError:
        return None
    zone = m.group(8)
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        if hours > 23 or minutes > 59:
            return None
        t -= sign * datetime.timedelta(hours=hours, minutes=minutes)
    fraction = m.group(7) or ".0"
    return (int(t.timestamp()), float("0" + fraction))


def valid_member_id(mid):
    if not isinstance(mid, str) or len(mid) != 18 or any(c not in USCC_CHARS for c in mid):
        return False
    total = sum(USCC_CHARS.index(c) * w for c, w in zip(mid[:17], USCC_WEIGHTS))
    return mid[17] == USCC_CHARS[(31 - total % 31) % 31]


def valid_name(text):
    return (isinstance(text, str) and text.strip() != "" and len(text) <= 200
            and not any(unicodedata.category(c) == "Cc" for c in text))


def charter_key_ok(hex_key):
    if not isinstance(hex_key, str) or len(hex_key) != 64 or not set(hex_key) <= HEX:
        return False
    point = decode_point(bytes.fromhex(hex_key))
    return point is not None and not small_order(point)


CHARTER_ROLES = ("founder", "member", "observer")


def check_charter(c, what):
    """The shape and document rules of one signed charter (docs/charter.md); returns its
    signing message."""
    check_object(c, what, {"type": STR, "version": (lambda x: type(x) is int, "an integer"),
                           "document": OBJ, "signatures": ARR})
    if c["type"] != "charter" or c["version"] != 1:
        raise Fail(f"{what}: not a signed charter (type {c['type']!r}, version {c['version']})")
    if len(canon_bytes(c)) > MAX_CHARTER_BYTES:
        raise Fail(f"{what}: over {MAX_CHARTER_BYTES} bytes")
    d = check_object(c["document"], f"{what} document",
                     {"federation": OBJ, "version": U64, "issued": STR, "expires": STR,
                      "members": ARR, "policy": OBJ}, {"previous": STR})
    fed = check_object(d["federation"], f"{what} federation", {"id": STR, "name": STR})
    if not valid_type_name(fed["id"]) or not valid_name(fed["name"]):
        raise Fail(f"{what}: invalid federation id or name")
    if d["version"] < 1:
        raise Fail(f"{what}: version 0")
    if (d["version"] == 1) != ("previous" not in d):
        raise Fail(f"{what}: `previous` is absent at genesis (version 1) and required after")
    if "previous" in d:
        hex_bytes(d["previous"], 32, f"{what} previous")
    issued, expires = parse_time(d["issued"]), parse_time(d["expires"])
    if issued is None or expires is None or expires <= issued:
        raise Fail(f"{what}: issued and expires must be RFC 3339, expires later")
    if not 1 <= len(d["members"]) <= 512:
        raise Fail(f"{what}: 1 to 512 members")
    ids, keys = set(), set()
    for i, m in enumerate(d["members"]):
        at = f"{what} members[{i}]"
        check_object(m, at, {"member_id": STR, "organisation": STR, "region": REGION,
                             "role": STR, "keys": ARR})
        if not valid_member_id(m["member_id"]) or m["member_id"] in ids:
            raise Fail(f"{at}: member_id invalid or repeated")
        ids.add(m["member_id"])
        if not valid_name(m["organisation"]) or m["role"] not in CHARTER_ROLES:
            raise Fail(f"{at}: invalid organisation or role")
        if not 1 <= len(m["keys"]) <= 4:
            raise Fail(f"{at}: 1 to 4 keys")
        own = [k.get("public_key") for k in m["keys"] if isinstance(k, dict)]
        successors = set()
        for j, k in enumerate(m["keys"]):
            check_object(k, f"{at} keys[{j}]", {"algorithm": STR, "public_key": STR},
                         {"replaces": STR})
            if k["algorithm"] != "ed25519" or not charter_key_ok(k["public_key"]):
                raise Fail(f"{at} keys[{j}]: not a valid ed25519 key")
            if k["public_key"] in keys:
                raise Fail(f"{at} keys[{j}]: a key belongs to one member, once")
            keys.add(k["public_key"])
            if "replaces" in k:
                # A rotation under way: the key it takes over from is another of this member's.
                if k["replaces"] == k["public_key"] or k["replaces"] not in own \
                        or k["replaces"] in successors:
                    raise Fail(f"{at} keys[{j}] replaces: another key of the same member, "
                               "replaced by one key")
                successors.add(k["replaces"])
    pol = check_object(d["policy"], f"{what} policy", {"signers": STR, "threshold": U64})
    eligible = sum(1 for m in d["members"] if m["role"] == pol["signers"])
    if pol["signers"] not in ("founder", "member") or not 1 <= pol["threshold"] <= eligible:
        raise Fail(f"{what}: invalid policy")
    if len(c["signatures"]) > 512:
        raise Fail(f"{what}: more than 512 signatures")
    for j, sig in enumerate(c["signatures"]):
        check_object(sig, f"{what} signatures[{j}]",
                     {"signer": STR, "algorithm": STR, "signature": STR})
        hex_bytes(sig["signer"], 32, f"{what} signatures[{j}] signer")
        hex_bytes(sig["signature"], 64, f"{what} signatures[{j}] signature")
        if sig["algorithm"] != "ed25519":
            raise Fail(f"{what} signatures[{j}]: algorithm {sig['algorithm']!r}")
    return b"yrd/v1/charter" + canon_bytes(d)


def counted_signers(signers_doc, message, signatures):
    """Member ids of `signers_doc`'s signing role whose key signed `message` (each once)."""
    role = signers_doc["policy"]["signers"]
    by_key = {k["public_key"]: m for m in signers_doc["members"] for k in m["keys"]}
    counted = set()
    for s in signatures:
        m = by_key.get(s["signer"])
        if m is None or m["role"] != role or m["member_id"] in counted:
            continue
        if ed25519_ok(bytes.fromhex(s["signer"]), bytes.fromhex(s["signature"]), message):
            counted.add(m["member_id"])
    return counted


def verify_charters(charters):
    """The chain a bundle carries, genesis first; returns [(document, digest, issued)]."""
    if not charters:
        raise Fail("charters: at least the genesis")
    if len(charters) > MAX_BUNDLE_CHARTERS:
        raise Fail(f"charters: {len(charters)} versions, more than the {MAX_BUNDLE_CHARTERS} "
                   f"a bundle may carry")
    import blake3
    chain = []
    for i, c in enumerate(charters):
        what = f"charters[{i}]"
        message = check_charter(c, what)
        d = c["document"]
        if d["version"] != i + 1:
            raise Fail(f"{what}: version {d['version']}, expected {i + 1} (genesis first, each "
                       f"version once, in order)")
        against = [(d, "its own members")]
        if chain:
            prev, prev_digest, _ = chain[-1]
            if d["federation"]["id"] != prev["federation"]["id"]:
                raise Fail(f"charters: charter of federation {d['federation']['id']!r}, "
                           f"not {prev['federation']['id']!r}")
            if d["previous"] != prev_digest:
                raise Fail(f"charters: charter version {d['version']} names previous "
                           f"{d['previous']}, but version {prev['version']} is {prev_digest}")
            against.insert(0, (prev, "the members of the version it replaces"))
        for signers, whose in against:
            n = len(counted_signers(signers, message, c["signatures"]))
            need = signers["policy"]["threshold"]
            if n < need:
                raise Fail(f"charters: charter version {d['version']}: {n} of the {need} "
                           f"{signers['policy']['signers']} signatures needed from {whose}")
        chain.append((d, blake3.blake3(message).hexdigest(), parse_time(d["issued"])))
    return chain


class Membership:
    """Who was a member when, by the version in force (highest version issued at or before)."""

    def __init__(self, chain):
        self.chain = chain
        self.genesis_issued = chain[0][0]["issued"]
        # Per version: the member of each peer id its keys make (looked up once per signer).
        self.peers = [{peer_id(bytes.fromhex(k["public_key"])): m
                       for m in d["members"] for k in m["keys"]} for d, _, _ in chain]
        # The member id of each peer id in any version (a rotation adds the next key, then
        # retires the old one); None for a key two versions gave to two members.
        self.member_ids = {}
        for version in self.peers:
            for peer, m in version.items():
                known = self.member_ids.setdefault(peer, m["member_id"])
                if known != m["member_id"]:
                    self.member_ids[peer] = None

    def same_member(self, a, b):
        """Whether peer ids a and b are keys of one member (the same id, or two keys the chain
        binds to one member id): a log whose owner rotated its key is one member's log."""
        if a == b:
            return True
        x, y = self.member_ids.get(a), self.member_ids.get(b)
        return x is not None and x == y

    def standing(self, what, peer, time):
        """("member", member, version), ("not-member", None, version) or ("before", None,
        None)."""
        t = parse_time(time)
        if t is None:
            raise Fail(f"{what} {peer}: time {json.dumps(time, ensure_ascii=False)} is not an "
                       f"RFC 3339 time")
        # Versions are 1, 2, ... in order: the highest issued at or before t is the last such.
        in_force = [i for i, (_, _, issued) in enumerate(self.chain) if issued <= t]
        if not in_force:
            return ("before", None, None)
        i = in_force[-1]
        version = self.chain[i][0]["version"]
        member = self.peers[i].get(peer)
        if member is not None:
            return ("member", member, version)
        return ("not-member", None, version)


def genesis_digest(bundle):
    """The digest of the charter genesis a (verified) bundle carries, or None."""
    if "charters" not in bundle:
        return None
    import blake3
    return blake3.blake3(b"yrd/v1/charter" + canon_bytes(bundle["charters"][0]["document"])).hexdigest()


def not_member(what, peer, time, version):
    return Fail(f"{what} {peer} is not a member of the charter in force at {time} "
                f"(version {version})")


def region_mismatch(at, field, found, whose, peer, member, version):
    return Fail(f"{at}: region mismatch: {field} is {found}, but charter version {version} "
                f"binds {whose} {peer} (member {member['member_id']}) to {member['region']}")


def signer_member(ms, what, peer, time, warnings):
    state, member, version = ms.standing(what, peer, time)
    if state == "not-member":
        raise not_member(what, peer, time, version)
    if state == "before":
        warnings.append(f"{what} {peer} signed at {time}, before the charter's genesis was "
                        f"issued ({ms.genesis_issued}): membership not checked")
    return member


def check_record_members(ms, r):
    """Step 9 for one record; False when it was made before the genesis."""
    at = f"record seq {r['seq']}"
    owner_what = f"{at}: the log owner"
    state, member, version = ms.standing(owner_what, r["actor"], r["time"])
    if state == "before":
        return False
    if state == "not-member":
        raise not_member(owner_what, r["actor"], r["time"], version)
    if member["region"] != r["actor_region"]:
        raise region_mismatch(at, "actor_region", r["actor_region"], "the log owner",
                              r["actor"], member, version)
    if "counterparty" not in r:
        return True
    c = r["counterparty"]
    what = f"{at}: the counterparty"
    state, member, version = ms.standing(what, c, r["time"])
    if state == "member":
        if "counterparty_region" in r and r["counterparty_region"] != member["region"]:
            raise region_mismatch(at, "counterparty_region", r["counterparty_region"],
                                  "the counterparty", c, member, version)
    elif state == "not-member" and r["kind"] != "refused":
        raise not_member(what, c, r["time"], version)
    return True


def base58btc(data):
    zeros = len(data) - len(data.lstrip(b"\0"))
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, rem = divmod(n, 58)
        out = B58[rem] + out
    return "1" * zeros + out


def peer_id(key):
    protobuf = bytes([0x08, 0x01, 0x12, 0x20]) + key
    return base58btc(bytes([0x00, len(protobuf)]) + protobuf)


# ------------------------------------------------------------------------------------------
# Merkle tree (RFC 6962 hashing, RFC 9162 proof verification)

def leaf_hash(data):
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def verify_inclusion(leaf, index, size, proof, root):
    if index >= size:
        raise Fail(f"leaf index {index} is not below the tree size {size}")
    fn, sn, x = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise Fail("the proof is too long")
        if fn & 1 or fn == sn:
            x = node_hash(p, x)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            x = node_hash(x, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise Fail("the proof is too short")
    if x != root:
        raise Fail("the root computed from the proof is not the head's root")


def verify_consistency(m, n, old_root, new_root, proof):
    if m > n:
        raise Fail(f"the old size {m} exceeds the head's size {n}")
    if m == n:
        if proof:
            raise Fail("a proof between equal sizes must be empty")
        if old_root != new_root:
            raise Fail("two different roots for the same size")
        return
    if m == 0:
        if proof:
            raise Fail("a proof from size 0 must be empty")
        if old_root != hashlib.sha256(b"").digest():
            raise Fail("the root of size 0 is not the empty tree's")
        return
    if not proof:
        raise Fail("the proof is empty")
    path = list(proof)
    if m & (m - 1) == 0:
        path.insert(0, old_root)
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise Fail("the proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise Fail("the proof is too short")
    if fr != old_root:
        raise Fail("the old root computed from the proof is not the cosigned root")
    if sr != new_root:
        raise Fail("the new root computed from the proof is not the head's root")


# ------------------------------------------------------------------------------------------
# The account (docs/evidence.md, "The account")

# Grapheme_Extend members that are not of category Mn/Me (Other_Grapheme_Extend, Unicode 16),
# and one that Python's older tables list as Mn but is Mc (not Grapheme_Extend) since.
OTHER_GRAPHEME_EXTEND = [
    (0x09BE, 0x09BE), (0x09D7, 0x09D7), (0x0B3E, 0x0B3E), (0x0B57, 0x0B57), (0x0BBE, 0x0BBE),
    (0x0BD7, 0x0BD7), (0x0CC0, 0x0CC0), (0x0CC2, 0x0CC2), (0x0CC7, 0x0CC8), (0x0CCA, 0x0CCB),
    (0x0CD5, 0x0CD6), (0x0D3E, 0x0D3E), (0x0D57, 0x0D57), (0x0DCF, 0x0DCF), (0x0DDF, 0x0DDF),
    (0x1715, 0x1715), (0x1734, 0x1734), (0x1B35, 0x1B35), (0x1B3B, 0x1B3B), (0x1B3D, 0x1B3D),
    (0x1B43, 0x1B44), (0x1BAA, 0x1BAA), (0x1BF2, 0x1BF3), (0x200C, 0x200C), (0x302E, 0x302F),
    (0xA953, 0xA953), (0xA9C0, 0xA9C0), (0xFF9E, 0xFF9F), (0x111C0, 0x111C0),
    (0x11235, 0x11235), (0x1133E, 0x1133E), (0x1134D, 0x1134D), (0x11357, 0x11357),
    (0x114B0, 0x114B0), (0x114BD, 0x114BD), (0x115AF, 0x115AF), (0x116B6, 0x116B6),
    (0x11930, 0x11930), (0x1193D, 0x1193D), (0x16FF0, 0x16FF1), (0x1D165, 0x1D166),
    (0x1D16D, 0x1D172), (0xE0020, 0xE007F),
]
NOT_GRAPHEME_EXTEND = {0x1171E}
NOT_PRINTABLE = {"Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Co", "Cn"}
_DEBUG_ESCAPES = {"\0": "\\0", "\t": "\\t", "\r": "\\r", "\n": "\\n", '"': '\\"',
                  "\\": "\\\\"}


def _grapheme_extend(c):
    cp = ord(c)
    if cp in NOT_GRAPHEME_EXTEND:
        return False
    if unicodedata.category(c) in ("Mn", "Me"):
        return True
    return any(lo <= cp <= hi for lo, hi in OTHER_GRAPHEME_EXTEND)


def quoted(s):
    """Rust's `{:?}` of a string."""
    out = ['"']
    for c in s:
        if c in _DEBUG_ESCAPES:
            out.append(_DEBUG_ESCAPES[c])
        elif _grapheme_extend(c) or (unicodedata.category(c) in NOT_PRINTABLE and c != " "):
            out.append("\\u{%x}" % ord(c))
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def byte_prefix(s, k):
    """The first k bytes of s, or None if s is shorter or byte k is inside a character."""
    b = s.encode("utf-8")
    if len(b) < k or (len(b) > k and (b[k] & 0xC0) == 0x80):
        return None
    return b[:k].decode("utf-8")


def first_bytes(s, k):
    p = byte_prefix(s, k)
    return s if p is None else p


def short_time(t):
    p = byte_prefix(t, 16)
    return t if p is None else p.replace("T", " ")


def describe_party(parties, peer):
    info = parties.get(peer)
    if info is None:
        return f"peer {peer}"
    code = info["region"]
    return f"{REGIONS[code][1]} ({code})"


def party_label(parties, ms, peer, time):
    """By the charter's region for the key at `time` when the bundle carries a charter."""
    if ms is None:
        return describe_party(parties, peer)
    state, member, _ = ms.standing("", peer, time)
    if state == "member":
        return f"{REGIONS[member['region']][1]} ({member['region']})"
    if state == "not-member":
        return f"peer {peer} (not a member)"
    return f"{describe_party(parties, peer)} (not checked)"


def describe(r, parties, digests, entries, ms=None):
    def label(peer):
        return party_label(parties, ms, peer, r["time"])

    me = label(r["actor"])
    other = label(r["counterparty"]) if "counterparty" in r else "-"
    if "dataset" in r and "version" in r:
        what = f"{r['dataset']} v{r['version']}"
    elif "dataset" in r:
        what = r["dataset"]
    else:
        what = ""
    digest = f"digest {first_bytes(r['data_digest'], 12)}…" if "data_digest" in r else ""
    when = short_time(r["time"])
    grant = f" under grant {first_bytes(r['grant'], 12)}" if "grant" in r else ""
    purpose = f" for purpose {quoted(r['purpose'])}" if "purpose" in r else ""
    kind = r["kind"]
    if kind == "delivery-served":
        receipt = "; no receipt in this bundle"
        for e in entries:
            x = e["record"]
            if (x["kind"] == "receipt-received"
                    and all(x.get(k) == r.get(k)
                            for k in ("counterparty", "dataset", "version", "data_digest"))):
                signed = any(d["type"] == "receipt" and d["digest"] in digests
                             for d in x["documents"])
                receipt = (f"; receipt {'signed ' if signed else ''}by {other} at "
                           f"{short_time(x['time'])}")
                break
        fields = r.get("fields", "all fields")
        verb = "delivered"
        amount = ""
        if all(k in r for k in ("chunks_sent", "chunk_count", "bytes_sent")):
            if r["chunks_sent"] < r["chunk_count"]:
                verb = "sent part of"
            cause = f": {r['cause']}" if "cause" in r else ""
            amount = (f"; {r['chunks_sent']} of {r['chunk_count']} chunks ({r['bytes_sent']} bytes)"
                      f" sent, session {r.get('ended', '')}{cause}")
        return (f"{when} {me} {verb} {what} ({digest}, {fields}{amount}) to {other}{grant}"
                f"{purpose}{receipt}")
    if kind == "dataset-received":
        return f"{when} {me} received {what} ({digest}) from {other}{grant}, verified"
    if kind == "refused":
        paren = f" ({what})" if what else ""
        return f"{when} {me} refused {other}{paren}: {r.get('cause', '')}"
    line = f"{when} {me} {kind.replace('-', ' ')}"
    if what:
        line += f" {what}"
    if "counterparty" in r:
        line += f" with {other}"
    line += grant + purpose
    if "cause" in r:
        line += f": {r['cause']}"
    return line


# ------------------------------------------------------------------------------------------
# Documents tied to the party that made them (docs/evidence.md, step 6.4)

PROVIDER_KINDS = {"dataset-published", "request-received", "grant-issued", "denial-issued",
                  "grant-revoked", "delivery-served", "receipt-received"}
CLIENT_KINDS = {"request-sent", "grant-received", "denial-received", "revocation-received",
                "dataset-received"}
# Document type: (its maker, [(document member, the record value it must equal)]).
MADE_BY = {
    "access-request": ("client", [("requester", "client"), ("provider", "provider"),
                                  ("dataset", "dataset")]),
    "grant": ("provider", [("provider", "provider"), ("grantee", "client"),
                           ("dataset", "dataset"), ("id", "grant")]),
    "denial": ("provider", [("provider", "provider"), ("requester", "client"),
                            ("dataset", "dataset")]),
    "revocation": ("provider", [("provider", "provider"), ("grantee", "client"),
                                ("grant_id", "grant")]),
    "receipt": ("client", [("receiver", "client"), ("provider", "provider"),
                           ("dataset", "dataset"), ("version", "version"),
                           ("data_digest", "data_digest"), ("grant_id", "grant")]),
    "manifest": ("provider", [("publisher", "provider"), ("dataset", "dataset"),
                              ("version", "version"), ("digest", "data_digest")]),
}


# Document members naming a party: under a charter, any key of the same member agrees.
PARTY_MEMBERS = {"provider", "grantee", "requester", "receiver", "publisher", "log"}


def check_document(r, doc, digest, owner_key, ms=None):
    at = f"record seq {r['seq']}"

    def same(a, b):
        return a == b or (ms is not None and ms.same_member(a, b))

    name = f"{doc['type']} {digest}"
    owner, other = r["actor"], r.get("counterparty")
    if r["kind"] in PROVIDER_KINDS:
        provider, client = owner, other
    elif r["kind"] in CLIENT_KINDS:
        provider, client = other, owner
    else:
        provider = client = None
    exchange = r["kind"] in PROVIDER_KINDS or r["kind"] in CLIENT_KINDS
    values = {"provider": provider, "client": client, "dataset": r.get("dataset"),
              "grant": r.get("grant"), "version": r.get("version"),
              "data_digest": r.get("data_digest")}
    t = doc["type"]
    if t in MADE_BY and exchange:
        by, fields = MADE_BY[t]
        role = {"client": "receiver" if t == "receipt" else "requester"}.get(
            by, "publisher" if t == "manifest" else "provider")
        maker = values[by]
        members = [(member, values[field]) for member, field in fields]
    elif t == "tree-head":
        role, maker, members = "log owner", other, [("log", other)]
    else:
        # Documents outside an exchange (catalogue, schema, ...): one of the two parties.
        by_owner = (doc["signer"] == owner_key
                    or peer_id(bytes.fromhex(doc["signer"])) == r["actor"])
        by_other = other is not None and peer_id(bytes.fromhex(doc["signer"])) == other
        if not by_owner and not by_other:
            raise Fail(f"{at}: {name} is signed by neither the log owner nor the counterparty")
        return
    if maker is None:
        raise Fail(f"{at}: names {name}, made by the {role}, but has no counterparty")
    signer = peer_id(bytes.fromhex(doc["signer"]))
    if not same(signer, maker):
        raise Fail(f"{at}: {name} is signed by {signer}, not by the {role} {maker}")
    for member, wanted in members:
        if wanted is None:
            continue
        found = doc["document"].get(member)
        if isinstance(wanted, str) and member in PARTY_MEMBERS:
            agrees = isinstance(found, str) and same(found, wanted)
        elif isinstance(wanted, str):
            agrees = isinstance(found, str) and found == wanted
        else:
            agrees = type(found) is int and found == wanted
        if not agrees:
            shown = "nothing" if member not in doc["document"] else json.dumps(found)
            raise Fail(f"{at}: {name} says {member} {shown}, the record says {wanted}")


# ------------------------------------------------------------------------------------------
# Completeness (docs/evidence.md, step 8)

def completeness(bundle, head, owner_key, log):
    dh = bundle.get("dataset_head")
    if dh is None:
        return False, ("completeness: cannot be shown (the bundle has no dataset-head; "
                       "it is a selection of records)")
    check_envelope(dh, "dataset-head", "dataset-head", DATASET_HEAD)
    verify_signature(dh, "dataset-head")
    s, hd = dh["document"], head["document"]
    if dh["signer"] != owner_key or s["log"] != log:
        raise Fail("dataset-head is not the log owner's")
    if s["size"] != hd["size"] or s["root"] != hd["root"]:
        raise Fail(f"dataset-head is made at size {s['size']} (root {s['root']}), "
                   f"not at the bundle's head")
    if s["latest"] >= s["size"]:
        raise Fail(f"dataset-head names seq {s['latest']} as the latest record, beyond the "
                   f"head's {s['size']} records")
    x = s["dataset"]
    records = [e["record"] for e in bundle["entries"]]
    by_seq = {r["seq"]: r for r in records}
    for r in records:
        if r.get("dataset") == x and r["seq"] > s["latest"]:
            raise Fail(f"record seq {r['seq']} is about {x}, after the latest record about it "
                       f"the dataset-head names ({s['latest']})")
    visited = set()
    cur, named_by = s["latest"], None
    while True:
        r = by_seq.get(cur)
        if r is None or r.get("dataset") != x:
            if r is not None:
                raise Fail(f"record seq {named_by if named_by is not None else cur} names seq "
                           f"{cur} as the previous record about {x}, but it is about "
                           f"{r.get('dataset', 'nothing')}")
            by = (f"named by record seq {named_by}" if named_by is not None
                  else f"the latest about it at head {s['size']}")
            floor, complete = cur, False
            line = f"INCOMPLETE: record seq {cur} about {x} is not in this bundle ({by})"
            break
        visited.add(cur)
        prev = r.get("prev_about_dataset")
        if prev is None:
            floor, complete = cur, False
            line = (f"complete from seq {cur}: every record about {x} from seq {cur} up to head "
                    f"{s['size']} is in this bundle; before seq {cur} the log did not link "
                    f"records about {x}, so completeness cannot be shown there")
            break
        if prev == cur:
            floor, complete = None, True
            line = f"complete: every record about {x} up to head {s['size']} ({len(visited)} records)"
            break
        named_by, cur = cur, prev
    for r in records:
        if (r.get("dataset") == x and r["seq"] not in visited
                and (floor is None or r["seq"] > floor)):
            raise Fail(f"record seq {r['seq']} is about {x}, but the links between the records "
                       f"about it skip it")
    return complete, line


# ------------------------------------------------------------------------------------------
# Verification (docs/evidence.md, "Verification, step by step")

def verify(bundle):
    # 1. Read: the top level.
    check_object(bundle, "bundle",
                 {"format": STR, "head": OBJ, "entries": ARR, "documents": ARR, "parties": ARR},
                 {"witnesses": ARR, "dataset_head": OBJ, "charters": ARR})
    # 2. Format.
    if bundle["format"] != "yrd-evidence/1":
        raise Fail(f"format {bundle['format']!r}: expected 'yrd-evidence/1'")
    # 9.1. The charter chain, when the bundle carries one.
    ms = Membership(verify_charters(bundle["charters"])) if "charters" in bundle else None
    warnings = []

    # 3. Parties.
    parties, keys = {}, {}
    for i, p in enumerate(bundle["parties"]):
        what = f"party {i}"
        check_envelope(p, what, "node-info", NODE_INFO)
        verify_signature(p, f"{what} NodeInfo")
        signer_peer = peer_id(bytes.fromhex(p["signer"]))
        claimed = p["document"]["peer_id"]
        if signer_peer != claimed:
            raise Fail(f"{what}: NodeInfo names {claimed} but is signed by {signer_peer}")
        if claimed in parties:
            raise Fail(f"{what}: peer {claimed} is listed twice among the parties")
        parties[claimed] = p["document"]
        keys[claimed] = p["signer"]

    # 4. Head.
    head = check_envelope(bundle["head"], "tree head", "tree-head", TREE_HEAD)
    verify_signature(head, "tree head")
    log = head["document"]["log"]
    if log not in parties:
        raise Fail(f"the log owner {log} is not among the parties")
    if head["signer"] != keys[log]:
        raise Fail("tree head is not signed by the log owner's key")
    owner_member = None
    if ms is not None:
        owner_member = signer_member(ms, "tree head: the log owner", log,
                                     head["document"]["time"], warnings)
    size = head["document"]["size"]
    root = hex_bytes(head["document"]["root"], 32, "tree head root")

    # 5. Documents.
    digests = {}
    for i, d in enumerate(bundle["documents"]):
        what = f"document {i}"
        check_envelope(d, what)
        verify_signature(d, f"{what} ({d['type']})")
        digests[envelope_digest(d)] = d

    # 6. Entries.
    entries = bundle["entries"]
    for i, e in enumerate(entries):
        check_object(e, f"entry {i}", {"record": OBJ, "proof": ARR})
        r = check_object(e["record"], f"entry {i} record", RECORD_REQUIRED, RECORD_OPTIONAL)
        at = f"record seq {r['seq']}"
        for j, ref in enumerate(r["documents"]):
            check_object(ref, f"{at} documents[{j}]", DOC_REF)
    previous = None
    before_genesis = []
    for i, e in enumerate(entries):
        r = e["record"]
        at = f"record seq {r['seq']}"
        if previous is not None and r["seq"] <= previous:
            raise Fail(f"entry {i}: {at} follows seq {previous}: entries must be in increasing "
                       f"seq order, each once")
        previous = r["seq"]
        # The owner may have rotated its key: under a charter, an actor of the same member
        # (each checked against the version in force at its record's time).
        if r["actor"] != log and not (ms is not None and ms.same_member(r["actor"], log)):
            raise Fail(f"{at}: actor {r['actor']} is not the log owner")
        if ms is not None and not check_record_members(ms, r):
            before_genesis.append(str(r["seq"]))
        if "prev_about_dataset" in r:
            if "dataset" not in r:
                raise Fail(f"{at}: prev_about_dataset without a dataset")
            if r["prev_about_dataset"] > r["seq"]:
                raise Fail(f"{at}: prev_about_dataset {r['prev_about_dataset']} is after the record")
        proof = [hex_bytes(h, 32, f"entry {i} proof[{j}]") for j, h in enumerate(e["proof"])]
        try:
            verify_inclusion(leaf_hash(canon_bytes(r)), r["seq"], size, proof, root)
        except Fail as err:
            raise Fail(f"{at}: not in the log at size {size}: {err}")
        for ref in r["documents"]:
            doc = digests.get(ref["digest"])
            if doc is None:
                raise Fail(f"{at}: names {ref['type']} {ref['digest']} which is not in the bundle")
            if doc["type"] != ref["type"]:
                raise Fail(f"{at}: document {ref['digest']} is a {doc['type']}, "
                           f"the record says {ref['type']}")
            check_document(r, doc, ref["digest"], keys[log], ms)

    if ms is not None and before_genesis:
        warnings.append(f"records seq {', '.join(before_genesis)} were made before the "
                        f"charter's genesis was issued ({ms.genesis_issued}): their parties' "
                        f"membership is not checked")
    # 7. Witnesses.
    witnesses, sizes, times, member_witnesses = [], [], [], 0
    for i, w in enumerate(bundle.get("witnesses", [])):
        what = f"witness {i}"
        check_object(w, what, {"cosignature": OBJ, "consistency": ARR})
        c = check_envelope(w["cosignature"], f"{what} cosignature", "cosignature", COSIGNATURE)
        verify_signature(c, f"{what} cosignature")
        doc = c["document"]
        if doc["witness"] not in parties:
            raise Fail(f"{what}: the witness {doc['witness']} is not among the parties")
        if doc["witness"] in witnesses:
            raise Fail(f"{what}: {doc['witness']} is listed twice")
        if doc["witness"] == log or (ms is not None and ms.same_member(doc["witness"], log)):
            raise Fail(f"{what}: cosigned by the log owner itself, which proves nothing")
        if c["signer"] != keys[doc["witness"]]:
            raise Fail(f"{what}: cosignature not signed by the witness's listed key")
        # A head witnessed before the owner rotated its key names the log by its earlier key.
        if doc["log"] != log and not (ms is not None and ms.same_member(doc["log"], log)):
            raise Fail(f"{what}: cosigns another log ({doc['log']})")
        if doc["size"] < 1:
            raise Fail(f"{what}: cosigns the empty log, which proves nothing")
        old_root = hex_bytes(doc["root"], 32, f"{what} root")
        proof = [hex_bytes(h, 32, f"{what} consistency[{j}]")
                 for j, h in enumerate(w["consistency"])]
        try:
            verify_consistency(doc["size"], size, old_root, root, proof)
        except Fail as err:
            raise Fail(f"{what}: the head is not consistent with what {doc['witness']} "
                       f"witnessed at size {doc['size']}: {err}")
        if ms is not None:
            w_what = f"{what}: the witness"
            state, _, version = ms.standing(w_what, doc["witness"], doc["time"])
            if state == "member":
                member_witnesses += 1
            elif state == "not-member":
                raise not_member(w_what, doc["witness"], doc["time"], version)
            else:
                warnings.append(f"{w_what} {doc['witness']} signed at {doc['time']}, before the "
                                f"charter's genesis was issued ({ms.genesis_issued}): not "
                                f"counted as a member witness")
        witnesses.append(doc["witness"])
        sizes.append(doc["size"])
        times.append(doc["time"])

    # 8. Completeness.
    complete, line = completeness(bundle, head, keys[log], log)
    if ms is not None and "dataset_head" in bundle:
        signer_member(ms, "dataset-head: the log owner", log,
                      bundle["dataset_head"]["document"]["time"], warnings)

    # The account, each record with the witnesses whose heads cover it (size > seq).
    account = []
    for e in entries:
        r = e["record"]
        covering = [party_label(parties, ms, w, t)
                    for w, n, t in zip(witnesses, sizes, times) if n > r["seq"]]
        coverage = (f" [witnessed by {', '.join(covering)}]" if covering
                    else " [not yet witnessed]")
        account.append(describe(r, parties, digests, entries, ms) + coverage)
    info = dict(parties[log])
    if ms is None:
        membership = ("membership: not checked (the bundle carries no charter; parties are as "
                      "their self-signed NodeInfo describes them)")
    else:
        if owner_member is not None:
            info["organisation"], info["region"] = owner_member["organisation"], owner_member["region"]
            owner = f"member {owner_member['member_id']} {owner_member['organisation']}"
        else:
            owner = "not checked"
        genesis_doc, genesis_digest, _ = ms.chain[0]
        membership = (f"membership: checked against charter {genesis_doc['federation']['id']} "
                      f"versions 1 to {ms.chain[-1][0]['version']} (genesis {genesis_digest}); "
                      f"log owner: {owner}; member witnesses: {member_witnesses} of "
                      f"{len(witnesses)}")
    return info, head["document"], witnesses, sizes, line, account, membership, warnings


def main(argv):
    args = argv[1:]
    genesis = None
    if len(args) == 3 and args[0] == "--genesis":
        genesis, args = args[1], args[2:]
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stderr if len(args) != 1 else sys.stdout)
        return EXIT_USAGE if len(args) != 1 else 0
    _require_modules()
    path = args[0]
    try:
        bundle = read_json(path)
        (info, head, witnesses, sizes, completeness_line, account, membership,
         warnings) = verify(bundle)
        if genesis is not None:
            found = genesis_digest(bundle)
            if found is None:
                raise Fail(f"the bundle carries no charter, so it cannot be from the federation "
                           f"of genesis {genesis}")
            if found != genesis:
                raise Fail(f"the bundle's charter starts from genesis {found}, not from the "
                           f"federation's {genesis}")
    except Fail as err:
        print(f"error: {path}: DOES NOT VERIFY: {err}", file=sys.stderr)
        return EXIT_FAILED
    region = info["region"]
    zh, en = REGIONS[region]
    if witnesses:
        cosigned = (f"cosigned by {len(witnesses)} witness(es) at sizes "
                    f"{', '.join(str(n) for n in sizes)}")
    else:
        cosigned = "cosigned by no witness"
    print(f"{path}: verifies. Log of {info['organisation']} ({region} {zh} {en}), "
          f"{head['size']} records at {head['time']} (root {head['root']}), {cosigned}.")
    print(membership)
    for warning in warnings:
        print(f"warning: {warning}")
    print(completeness_line)
    for line in account:
        print(line)
    return 0


if __name__ == "__main__":
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(encoding="utf-8")
        sys.stderr.reconfigure(encoding="utf-8")
    sys.exit(main(sys.argv))
