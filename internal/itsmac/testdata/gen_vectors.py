#!/usr/bin/env python3
"""Regenerates poly1305_rfc8439.json and wegman_carter.json (see README.md).

Independent of the Go code: big-integer Poly1305 written from RFC 8439 §2.5.1.
Every RFC vector is checked against its published tag before it is written.
Run from this directory: python3 gen_vectors.py
"""
import json

P = (1 << 130) - 5
CLAMP = 0x0ffffffc0ffffffc0ffffffc0fffffff


def le(b):
    return int.from_bytes(b, "little")


def h(r16, msg):
    """Poly1305 polynomial hash with r clamped and s = 0, mod 2^128."""
    r, acc = le(r16) & CLAMP, 0
    for i in range(0, len(msg), 16):
        acc = ((acc + le(msg[i:i + 16] + b"\x01")) * r) % P
    return acc % (1 << 128)


def poly1305(key, msg):
    return ((h(key[:16], msg) + le(key[16:])) % (1 << 128)).to_bytes(16, "little")


def wegman_carter(r, pad, n, msg):
    """tag_n = (h_r(n as 8 big-endian bytes || msg) + pad) mod 2^128."""
    return ((h(r, n.to_bytes(8, "big") + msg) + le(pad)) % (1 << 128)).to_bytes(16, "little")


IETF = (b"Any submission to the IETF intended by the Contributor for publication as all or part "
        b"of an IETF Internet-Draft or RFC and any statement made within the context of an IETF "
        b"activity is considered an \"IETF Contribution\". Such statements include oral statements "
        b"in IETF sessions, as well as written and electronic communications made at any time or "
        b"place, which are addressed to")
JABBERWOCKY = (b"'Twas brillig, and the slithy toves\nDid gyre and gimble in the wabe:\n"
               b"All mimsy were the borogoves,\nAnd the mome raths outgrabe.")
Z, FF = "00" * 16, "ff" * 16
R10 = "01000000000000000400000000000000"
M10 = "e33594d7505e43b900000000000000003394d7505e4379cd0100000000000000" + Z

# (name, key r‖s, message, published tag)
RFC = [
    ("RFC 8439 §2.5.2", "85d6be7857556d337f4452fe42d506a80103808afb0db2fd4abff6af4149f51b",
     b"Cryptographic Forum Research Group".hex(), "a8061dc1305136c6c22b8baf0c0127a9"),
    ("RFC 8439 A.3 #1", Z + Z, Z * 4, Z),
    ("RFC 8439 A.3 #2", Z + "36e5f6b5c5e06070f0efca96227a863e", IETF.hex(), "36e5f6b5c5e06070f0efca96227a863e"),
    ("RFC 8439 A.3 #3", "36e5f6b5c5e06070f0efca96227a863e" + Z, IETF.hex(), "f3477e7cd95417af89a6b8794c310cf0"),
    ("RFC 8439 A.3 #4", "1c9240a5eb55d38af333888604f6b5f0473917c1402b80099dca5cbc207075c0",
     JABBERWOCKY.hex(), "4541669a7eaaee61e708dc7cbcc5eb62"),
    ("RFC 8439 A.3 #5", "02" + "00" * 15 + Z, FF, "03" + "00" * 15),
    ("RFC 8439 A.3 #6", "02" + "00" * 15 + FF, "02" + "00" * 15, "03" + "00" * 15),
    ("RFC 8439 A.3 #7", "01" + "00" * 15 + Z, FF + "f0" + "ff" * 15 + "11" + "00" * 15, "05" + "00" * 15),
    ("RFC 8439 A.3 #8", "01" + "00" * 15 + Z, FF + "fb" + "fe" * 15 + "01" * 16, Z),
    ("RFC 8439 A.3 #9", "02" + "00" * 15 + Z, "fd" + "ff" * 15, "fa" + "ff" * 15),
    ("RFC 8439 A.3 #10", R10 + Z, M10 + "01" + "00" * 15, "14000000000000005500000000000000"),
    ("RFC 8439 A.3 #11", R10 + Z, M10, "13" + "00" * 15),
]
PAD = "0123456789abcdeffedcba9876543210"


def main():
    poly = []
    for name, key, msg, tag in RFC:
        got = poly1305(bytes.fromhex(key), bytes.fromhex(msg)).hex()
        assert got == tag, (name, got, tag)
        poly.append({"name": name, "key": key, "msg": msg, "tag": tag})

    wc = []
    for name, key, msg, tag in RFC:
        # The first 8 bytes of the RFC message read as the number n: then
        # n || rest is the RFC message, r and s are hash key and pad, and the
        # Wegman-Carter tag is the published Poly1305 tag.
        m = bytes.fromhex(msg)
        wc.append({"name": f"{name} as n = first 8 bytes", "hash_key": key[:32], "pad": key[32:],
                   "n": int.from_bytes(m[:8], "big"), "msg": m[8:].hex(), "tag": tag})
    r, s, m = RFC[0][1][:32], RFC[0][1][32:], RFC[0][2]
    for n in (0, 1, (1 << 64) - 1):
        wc.append({"name": f"RFC 8439 §2.5.2 r, s and message, n = {n}", "hash_key": r, "pad": s,
                   "n": n, "msg": m, "tag": None})
    wc.append({"name": "empty message, n = 0: h_r(0^8), pad " + PAD, "hash_key": r, "pad": PAD, "n": 0,
               "msg": "", "tag": None})
    for v in wc:
        got = wegman_carter(bytes.fromhex(v["hash_key"]), bytes.fromhex(v["pad"]), v["n"],
                            bytes.fromhex(v["msg"])).hex()
        assert v["tag"] in (None, got), (v["name"], got)
        v["tag"] = got
    tags = [v["tag"] for v in wc[-4:-1]]
    assert len(set(tags)) == 3, "the number must change the tag"

    for name, data in (("poly1305_rfc8439.json", poly), ("wegman_carter.json", wc)):
        with open(name, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, ensure_ascii=False)
            f.write("\n")


if __name__ == "__main__":
    main()
