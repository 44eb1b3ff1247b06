#!/usr/bin/env python3
"""Extracts NIST ACVP key generation vectors (FIPS 203 ML-KEM keyGen, FIPS 204
ML-DSA keyGen) for internal/hybrid's known-answer tests from the copies that
github.com/cloudflare/circl v1.6.5 ships in its testdata (ACVP-Server JSON).
Prints, per parameter set, the first test case's seed and the SHA3-256 of
the expected public key, in Go syntax, for acvp_test.go.

Run: python3 internal/hybrid/testdata/acvp.py "$(go env GOMODCACHE)/github.com/cloudflare/circl@v1.6.5"
"""
import gzip
import hashlib
import json
import os
import sys


def load(root, path):
    with gzip.open(os.path.join(root, path)) as f:
        return json.load(f)


def first_per_set(prompt, results):
    want = {t["tcId"]: t for g in results["testGroups"] for t in g["tests"]}
    for g in prompt["testGroups"]:
        t = g["tests"][0]
        yield g["parameterSet"], t, want[t["tcId"]]


def main(root):
    print("var acvpKeyGen = []acvpKeyGenKAT{")
    kem = "kem/mlkem/testdata/ML-KEM-keyGen-FIPS203/"
    for ps, t, r in first_per_set(load(root, kem + "prompt.json.gz"), load(root, kem + "expectedResults.json.gz")):
        if ps == "ML-KEM-512":
            continue
        seed = t["d"].lower() + t["z"].lower()  # FIPS 203 seed: d ‖ z
        ek = hashlib.sha3_256(bytes.fromhex(r["ek"])).hexdigest()
        print('\t{"%s", %d, "%s", "%s"},' % (ps, t["tcId"], seed, ek))
    dsa = "sign/mldsa/testdata/ML-DSA-keyGen-FIPS204/"
    for ps, t, r in first_per_set(load(root, dsa + "prompt.json.gz"), load(root, dsa + "expectedResults.json.gz")):
        pk = hashlib.sha3_256(bytes.fromhex(r["pk"])).hexdigest()
        print('\t{"%s", %d, "%s", "%s"},' % (ps, t["tcId"], t["seed"].lower(), pk))
    print("}")


if __name__ == "__main__":
    main(sys.argv[1])
