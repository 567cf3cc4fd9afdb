#!/usr/bin/env python3
"""An independent checker for sekisho ledger output, written from the RFC
texts and not from sekisho's C code (Python 3 standard library only).

  RFC 9162 2.1.1  Merkle Tree Hash (MTH) over entries
  RFC 9162 2.1.3.2 verifying an inclusion proof
  RFC 9162 2.1.4.2 verifying a consistency proof
  RFC 8032 5.1.7  verifying an Ed25519 signature (the signed tree head)

As a program, for an auditor:
  rfc9162.py root < entries.txt          MTH of the lines (as `sekisho ledger cat` prints)
  rfc9162.py head HEAD.json               check a head's signature
  rfc9162.py inclusion PROOF.json ENTRY   check an inclusion proof for one entry line
  rfc9162.py consistency PROOF.json       check a consistency proof
Each exits 0 when the check passes, 1 when it fails.
"""
import hashlib
import json
import sys

# ---- RFC 9162 -----------------------------------------------------------------


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def mth(entries):
    """MTH(D[n]) of a list of entry byte strings (RFC 9162 2.1.1)."""
    n = len(entries)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaf_hash(entries[0])
    k = 1
    while k * 2 < n:
        k *= 2
    return node_hash(mth(entries[:k]), mth(entries[k:]))


def verify_inclusion(leaf_index, tree_size, entry_hash, audit_path, root):
    """RFC 9162 2.1.3.2, step by step."""
    if leaf_index >= tree_size:
        return False
    fn, sn, r = leaf_index, tree_size - 1, entry_hash
    for p in audit_path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while True:
                    fn >>= 1
                    sn >>= 1
                    if fn & 1 or fn == 0:
                        break
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first, second, first_hash, second_hash, path):
    """RFC 9162 2.1.4.2, step by step."""
    if first == second:
        return not path and first_hash == second_hash
    if first == 0 or first > second or not path:
        return False
    path = list(path)
    if first & (first - 1) == 0:
        path.insert(0, first_hash)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while True:
                    fn >>= 1
                    sn >>= 1
                    if fn & 1 or fn == 0:
                        break
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_hash and sr == second_hash and sn == 0


# ---- RFC 8032 Ed25519 verification ----------------------------------------------

_p = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_d = -121665 * pow(121666, _p - 2, _p) % _p
_sqrt_m1 = pow(2, (_p - 1) // 4, _p)


def _add(P, Q):
    A = (P[1] - P[0]) * (Q[1] - Q[0]) % _p
    B = (P[1] + P[0]) * (Q[1] + Q[0]) % _p
    C = 2 * P[3] * Q[3] * _d % _p
    D = 2 * P[2] * Q[2] % _p
    E, F, G, H = B - A, D - C, D + C, B + A
    return (E * F % _p, G * H % _p, F * G % _p, E * H % _p)


def _mul(s, P):
    Q = (0, 1, 1, 0)
    while s > 0:
        if s & 1:
            Q = _add(Q, P)
        P = _add(P, P)
        s >>= 1
    return Q


def _equal(P, Q):
    return (P[0] * Q[2] - Q[0] * P[2]) % _p == 0 and (P[1] * Q[2] - Q[1] * P[2]) % _p == 0


def _recover_x(y, sign):
    if y >= _p:
        return None
    x2 = (y * y - 1) * pow(_d * y * y + 1, _p - 2, _p)
    if x2 % _p == 0:
        return None if sign else 0
    x = pow(x2, (_p + 3) // 8, _p)
    if (x * x - x2) % _p != 0:
        x = x * _sqrt_m1 % _p
    if (x * x - x2) % _p != 0:
        return None
    if (x & 1) != sign:
        x = _p - x
    return x


_gy = 4 * pow(5, _p - 2, _p) % _p
_gx = _recover_x(_gy, 0)
_G = (_gx, _gy, 1, _gx * _gy % _p)


def _decompress(s):
    if len(s) != 32:
        return None
    y = int.from_bytes(s, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    x = _recover_x(y, sign)
    if x is None:
        return None
    return (x, y, 1, x * y % _p)


def ed25519_verify(public: bytes, msg: bytes, sig: bytes) -> bool:
    if len(public) != 32 or len(sig) != 64:
        return False
    A = _decompress(public)
    R = _decompress(sig[:32])
    if A is None or R is None:
        return False
    s = int.from_bytes(sig[32:], "little")
    if s >= _L:
        return False
    h = int.from_bytes(hashlib.sha512(sig[:32] + public + msg).digest(), "little") % _L
    return _equal(_mul(s, _G), _add(R, _mul(h, A)))


def _selftest():
    # RFC 8032 7.1, TEST 1 (empty message)
    pk = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    sig = bytes.fromhex(
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    )
    assert ed25519_verify(pk, b"", sig), "RFC 8032 test vector 1 does not verify"
    assert not ed25519_verify(pk, b"x", sig), "a wrong message verifies"


# ---- sekisho's signed tree head ---------------------------------------------------


def sth_message(head) -> bytes:
    """The exact signed bytes (docs/LEDGER.md)."""
    return ("sekisho-sth-v1\n%d\n%s\n%d\n" % (head["tree_size"], head["root_hash"], head["timestamp"])).encode()


def verify_head(head) -> bool:
    return ed25519_verify(
        bytes.fromhex(head["public_key"]), sth_message(head), bytes.fromhex(head["signature"])
    )


def main(argv):
    _selftest()
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd = argv[1]
    if cmd == "root":
        lines = sys.stdin.buffer.read().split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        print(mth(lines).hex())
        return 0
    if cmd == "head":
        ok = verify_head(json.load(open(argv[2])))
    elif cmd == "inclusion":
        pr = json.load(open(argv[2]))
        entry = open(argv[3], "rb").read().rstrip(b"\n")
        ok = leaf_hash(entry).hex() == pr["leaf_hash"] and verify_inclusion(
            pr["leaf_index"], pr["tree_size"], leaf_hash(entry),
            [bytes.fromhex(h) for h in pr["audit_path"]], bytes.fromhex(pr["root_hash"]))
    elif cmd == "consistency":
        pr = json.load(open(argv[2]))
        ok = verify_consistency(pr["first"], pr["second"], bytes.fromhex(pr["first_root"]),
                                bytes.fromhex(pr["second_root"]),
                                [bytes.fromhex(h) for h in pr["consistency_path"]])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
