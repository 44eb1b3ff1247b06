package hybrid

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestKeysRedact(t *testing.T) {
	dk, err := kem768.NewDecapKeyFromSeed(bytes.Repeat([]byte{0xab}, KEMSeedSize))
	if err != nil {
		t.Fatal(err)
	}
	sk, err := dsa65.NewKeyFromSeed(bytes.Repeat([]byte{0xcd}, SignatureSeedSize))
	if err != nil {
		t.Fatal(err)
	}
	dkSeed, _ := dk.Seed()
	skRaw, _ := sk.k.sk.MarshalBinary()
	leaks := []string{hex.EncodeToString(dkSeed.Expose()[:8]), hex.EncodeToString(skRaw[:8]),
		"abababab", "cdcdcdcd", fmt.Sprint(dkSeed.Expose()[:4]), "171 171 171"}

	type holder struct {
		DK *DecapKey
		SK *PrivateKey
		PK PrivateKey
	}
	// fmt cannot call methods of unexported fields and prints them by
	// reflection; the key state behind a pointer shows as an address with
	// %v (with %s or %q fmt would expand it, as it would a secret.Bytes).
	type unexported struct {
		dk  *DecapKey
		dkv DecapKey
		skv PrivateKey
	}
	h := holder{DK: dk, SK: sk, PK: *sk}
	u := unexported{dk, *dk, *sk}
	var outs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%q", "%d"} {
		outs = append(outs, fmt.Sprintf(verb, dk), fmt.Sprintf(verb, sk), fmt.Sprintf(verb, *dk),
			fmt.Sprintf(verb, *sk), fmt.Sprintf(verb, h), fmt.Sprintf(verb, &h))
	}
	for _, verb := range []string{"%v", "%+v", "%#v"} {
		outs = append(outs, fmt.Sprintf(verb, u), fmt.Sprintf(verb, &u))
	}
	j, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	outs = append(outs, string(j))
	var buf bytes.Buffer
	for _, hd := range []slog.Handler{slog.NewJSONHandler(&buf, nil), slog.NewTextHandler(&buf, nil)} {
		slog.New(hd).Info("keys", "dk", dk, "sk", sk, "holder", h)
	}
	outs = append(outs, buf.String())
	for _, o := range outs {
		for _, l := range leaks {
			if strings.Contains(o, l) {
				t.Errorf("output leaks key material (%s): %s", l, o)
			}
		}
	}
	if s := fmt.Sprintf("%v", dk) + fmt.Sprintf("%#v", sk); s != redactedText+redactedText {
		t.Errorf("keys print as %q, want %s", s, redactedText)
	}
}
