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


def wegman_carter(r, mask, msg):
    return (h(r, msg) ^ le(mask)).to_bytes(16, "little")


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
MASKS = {"a": FF, "b": "0123456789abcdeffedcba9876543210"}


def main():
    poly = []
    for name, key, msg, tag in RFC:
        got = poly1305(bytes.fromhex(key), bytes.fromhex(msg)).hex()
        assert got == tag, (name, got, tag)
        poly.append({"name": name, "key": key, "msg": msg, "tag": tag})

    wc = []
    for name, key, msg, tag in RFC:
        if key[32:] != Z:
            continue  # s = 0 only: then the published tag is h_r(m) itself
        for label, mask in MASKS.items():
            want = bytes(a ^ b for a, b in zip(bytes.fromhex(tag), bytes.fromhex(mask))).hex()
            wc.append({"name": f"{name} (s=0) XOR mask {label}", "hash_key": key[:32], "mask": mask,
                       "msg": msg, "tag": want})
    r, s = RFC[0][1][:32], RFC[0][1][32:]
    wc.append({"name": "RFC 8439 §2.5.2 r and s as hash key and XOR mask (not the RFC tag, which adds s)",
               "hash_key": r, "mask": s, "msg": RFC[0][2], "tag": None})
    wc.append({"name": "empty message: h = 0, tag = mask", "hash_key": r, "mask": MASKS["b"], "msg": "",
               "tag": MASKS["b"]})
    for v in wc:
        got = wegman_carter(bytes.fromhex(v["hash_key"]), bytes.fromhex(v["mask"]), bytes.fromhex(v["msg"])).hex()
        assert v["tag"] in (None, got), (v["name"], got)
        v["tag"] = got
    assert wc[-2]["tag"] != RFC[0][3]

    for name, data in (("poly1305_rfc8439.json", poly), ("wegman_carter.json", wc)):
        with open(name, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, ensure_ascii=False)
            f.write("\n")


if __name__ == "__main__":
    main()
