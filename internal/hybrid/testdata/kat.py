#!/usr/bin/env python3
"""Known-answer vectors for internal/hybrid, computed independently of the Go
code with Python's hashlib (SHAKE256, SHA3-256) and hmac, and an HKDF written
here from RFC 5869.

Run: python3 internal/hybrid/testdata/kat.py
Its output (Go syntax) is pasted into kat_test.go unchanged.
"""
import hashlib
import hmac
import json
import struct


def encode(*fields):
    """encodeFields: each field as a 4-byte big-endian length, then its bytes."""
    return b"".join(struct.pack(">I", len(f)) + f for f in fields)


def u64(v):
    return struct.pack(">Q", v)


def hkdf(hash_fn, ikm, salt, info, length):
    """RFC 5869 §2.2 (Extract) and §2.3 (Expand)."""
    hash_len = hash_fn().digest_size
    assert length <= 255 * hash_len
    if not salt:
        salt = bytes(hash_len)
    prk = hmac.new(salt, ikm, hash_fn).digest()
    t, okm = b"", b""
    for i in range((length + hash_len - 1) // hash_len):
        t = hmac.new(prk, t + info + bytes([i + 1]), hash_fn).digest()
        okm += t
    return okm[:length]


# The HKDF above reproduces RFC 5869 Appendix A.1 (SHA-256).
assert hkdf(hashlib.sha256, bytes([0x0B] * 22), bytes(range(13)), bytes(range(0xF0, 0xFA)), 42).hex() == (
    "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")


def hkdf_sha3_256(ikm, salt, info, length):
    return hkdf(hashlib.sha3_256, ikm, salt, info, length)


def xor(a, b):
    return bytes(x ^ y for x, y in zip(a, b))


def combine_xor(k, r, th, stream, key_id):
    mask = hashlib.shake_256(encode(b"qkms-combiner-xor-v1", r, th, stream.encode(), key_id)).digest(len(k))
    return xor(k, mask)


def combine_kdf(k, r, th, stream, key_id):
    return hkdf_sha3_256(k + r, th, encode(b"qkms-combiner-kdf-v1", stream.encode(), key_id), len(k))


CASES = [
    # name, K_qkd, R, transcript hash, stream, key ID
    ("32-byte key", bytes(range(32)), bytes(range(0x80, 0xA0)),
     hashlib.sha3_256(b"qkms transcript 1").digest(), "A>B",
     bytes.fromhex("00112233445566778899aabbccddeeff")),
    ("1-byte key, empty stream", b"\xff", bytes([0x5A] * 32), bytes(range(32)), "", bytes(16)),
    ("100-byte key, UTF-8 stream", bytes((7 * i) & 0xFF for i in range(100)), bytes(range(32, 64)),
     hashlib.sha3_256(b"qkms transcript 3").digest(), "str\u00e9am-\u00fc",
     bytes.fromhex("6ba7b8109dad11d180b400c04fd430c8")),
]

# A key of the largest size hkdf-sha3-256 allows; the vector is the SHA3-256
# of the output.
BIG = ("8160-byte key", bytes(i & 0xFF for i in range(255 * 32)), bytes(range(0x40, 0x60)),
       hashlib.sha3_256(b"qkms transcript big").digest(), "big",
       bytes.fromhex("f0e0d0c0b0a090807060504030201000"))


def q(s):
    """A Go string literal."""
    return json.dumps(s, ensure_ascii=False)


def main():
    print("var combinerKATs = []combinerKAT{")
    for name, k, r, th, stream, kid in CASES:
        print("\t{%s, %s, %s, %s, %s, %s,\n\t\t%s,\n\t\t%s}," % (
            q(name), q(k.hex()), q(r.hex()), q(th.hex()), q(stream), q(kid.hex()),
            q(combine_xor(k, r, th, stream, kid).hex()), q(combine_kdf(k, r, th, stream, kid).hex())))
    print("}")
    print()
    name, k, r, th, stream, kid = BIG
    print("// %s: SHA3-256 of the xor-shake256 and hkdf-sha3-256 outputs" % name)
    print("const bigXOR, bigKDF = %s, %s" % (q(hashlib.sha3_256(combine_xor(k, r, th, stream, kid)).hexdigest()),
                                           q(hashlib.sha3_256(combine_kdf(k, r, th, stream, kid)).hexdigest())))
    print("const bigTH = %s" % q(th.hex()))

    ss = bytes(range(0x10, 0x30))
    h0 = hashlib.sha3_256(b"binding").digest()
    r = bytes(range(0x80, 0xA0))
    mask = hashlib.shake_256(encode(b"qkms-wrap-v1", ss, h0)).digest(32)
    print()
    print("// wrap: ss, H0, R, Wrap = R XOR SHAKE256(encode(\"qkms-wrap-v1\", ss, H0))[:32]")
    print("const wrapSS, wrapH0, wrapR, wrapWant = %s, %s, %s, %s" % (q(ss.hex()), q(h0.hex()), q(r.hex()), q(xor(r, mask).hex())))

    th = hashlib.sha3_256(b"path").digest()
    msg = encode(b"A>C", b"batch-7", th, u64(1), b"B", b"A", b"C")
    print()
    print("// path message: SHA3-256(encode(\"A>C\", \"batch-7\", TH, u64(1), \"B\", \"A\", \"C\"))")
    print("const pathTH, pathMsgHash = %s, %s" % (q(th.hex()), q(hashlib.sha3_256(msg).hexdigest())))


if __name__ == "__main__":
    main()
