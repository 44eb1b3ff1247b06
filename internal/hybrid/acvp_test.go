package hybrid

import (
	"crypto/sha3"
	"encoding/hex"
	"testing"
)

type acvpKeyGenKAT struct {
	alg     string
	tcID    int
	seed    string // ML-KEM: d ‖ z; ML-DSA: ξ
	pubHash string // SHA3-256 of the expected encapsulation / public key
}

// NIST ACVP-Server key generation vectors (ML-KEM-keyGen-FIPS203,
// ML-DSA-keyGen-FIPS204), first test case of each parameter set, as shipped
// in circl v1.6.5's testdata; extracted by testdata/acvp.py (Python), which
// hashes the expected keys with hashlib's SHA3-256.
var acvpKeyGen = []acvpKeyGenKAT{
	{"ML-KEM-768", 26, "e34a701c4c87582f42264ee422d3c684d97611f2523efe0c998af05056d693dca85768f3486bd32a01bf9a8f21ea938e648eae4e5448c34c3eb88820b159eedd", "e29020839d052fa372585627f8b59ee312ae414c979d825f06a6929a79625718"},
	{"ML-KEM-1024", 51, "49ac8b99bb1e6a8ea818261f8be68bdeaa52897e7ec6c40b530bc760ab77dce399e3246884181f8e1dd44e0c7629093330221fd67d9b7d6e1510b2dbad8762f7", "d2e574dfd8cd0ae893aa7e125b44b924f45223ec09f2ad1141ea93a68050dbf6"},
	{"ML-DSA-44", 1, "93ef2e6ef1fb08999d142abe0295482370d3f43bdb254a78e2b0d5168eca065f", "b09f140435b15d8da2e35f2c8b474068a473edb4b79eab3912278a699bea09c0"},
	{"ML-DSA-65", 26, "70cefb9aed5b68e018b079da8284b9d5cad5499ed9c265ff73588005d85c225c", "3bab48eb1a51111d56433219d7abe12d15a8a3a1e0a190a9d144cf93fa34185c"},
	{"ML-DSA-87", 51, "38359fbcd79582cffe609e137ee2efe8a8dbcbad18ba92bb433ab4f09b49299d", "6dbc9c454b1ee64d654382ffc7d1314a0498476a59e37364290e82195da101c7"},
}

func TestACVPKeyGen(t *testing.T) {
	for _, v := range acvpKeyGen {
		t.Run(v.alg, func(t *testing.T) {
			seed := unhex(t, v.seed)
			var pub []byte
			if k, err := KEMByName(v.alg); err == nil {
				dk, err := k.NewDecapKeyFromSeed(seed)
				if err != nil {
					t.Fatal(err)
				}
				pub = dk.EncapsulationKey()
			} else {
				s, err := SignerByName(v.alg)
				if err != nil {
					t.Fatal(err)
				}
				k, err := s.NewKeyFromSeed(seed)
				if err != nil {
					t.Fatal(err)
				}
				pub = k.Public()
			}
			if h := sha3.Sum256(pub); hex.EncodeToString(h[:]) != v.pubHash {
				t.Errorf("%s tcId %d: SHA3-256(public key) = %x, want %s", v.alg, v.tcID, h, v.pubHash)
			}
		})
	}
}
