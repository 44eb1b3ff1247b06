package coap004

import (
	"errors"
	"testing"

	"github.com/qkms/qkms/internal/etsi004"
)

// seed adds JSON and CBOR seeds of one message.
func seed(f *testing.F, enc func(Format) ([]byte, error)) {
	for _, fm := range []Format{JSON, CBOR} {
		p, err := enc(fm)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(fm == JSON, p)
	}
	f.Add(true, []byte(`{"source":"A","source":"B"}`))
	f.Add(false, []byte{0xbf, 0xff})
}

func formatOfBool(j bool) Format {
	if j {
		return JSON
	}
	return CBOR
}

// Request decoders: never panic, fail only with ErrBadRequest, and what
// they accept re-encodes to something they decode to the same value.

func FuzzDecodeOpenRequest(f *testing.F) {
	seed(f, func(fm Format) ([]byte, error) {
		return EncodeOpenRequest(fm, etsi004.OpenRequest{Source: "sae://A", Destination: "B", QoS: testQoS, KeyStreamID: testKSID})
	})
	f.Fuzz(func(t *testing.T, j bool, p []byte) {
		fm := formatOfBool(j)
		r, err := DecodeOpenRequest(fm, p)
		if err != nil {
			if !errors.Is(err, etsi004.ErrBadRequest) {
				t.Fatalf("error %v is not ErrBadRequest", err)
			}
			return
		}
		q, err := EncodeOpenRequest(fm, r)
		if err != nil {
			t.Fatal(err)
		}
		if r2, err := DecodeOpenRequest(fm, q); err != nil || r2 != r {
			t.Fatalf("re-decoded %+v, %v, want %+v", r2, err, r)
		}
	})
}

func FuzzDecodeGetKeyRequest(f *testing.F) {
	seed(f, func(fm Format) ([]byte, error) {
		return EncodeGetKeyRequest(fm, etsi004.GetKeyRequest{KeyStreamID: testKSID, Index: 1 << 31, MetadataSize: 1024})
	})
	f.Fuzz(func(t *testing.T, j bool, p []byte) {
		fm := formatOfBool(j)
		r, err := DecodeGetKeyRequest(fm, p)
		if err != nil {
			if !errors.Is(err, etsi004.ErrBadRequest) {
				t.Fatalf("error %v is not ErrBadRequest", err)
			}
			return
		}
		q, _ := EncodeGetKeyRequest(fm, r)
		if r2, err := DecodeGetKeyRequest(fm, q); err != nil || r2 != r {
			t.Fatalf("re-decoded %+v, %v, want %+v", r2, err, r)
		}
	})
}

func FuzzDecodeCloseRequest(f *testing.F) {
	seed(f, func(fm Format) ([]byte, error) {
		return EncodeCloseRequest(fm, etsi004.CloseRequest{KeyStreamID: testKSID})
	})
	f.Fuzz(func(t *testing.T, j bool, p []byte) {
		fm := formatOfBool(j)
		r, err := DecodeCloseRequest(fm, p)
		if err != nil {
			if !errors.Is(err, etsi004.ErrBadRequest) {
				t.Fatalf("error %v is not ErrBadRequest", err)
			}
			return
		}
		q, _ := EncodeCloseRequest(fm, r)
		if r2, err := DecodeCloseRequest(fm, q); err != nil || r2 != r {
			t.Fatalf("re-decoded %+v, %v, want %+v", r2, err, r)
		}
	})
}

// Response decoders: never panic, fail only with ErrMalformedResponse.

func checkResponseErr(t *testing.T, err error) {
	if err != nil && !errors.Is(err, ErrMalformedResponse) {
		t.Fatalf("error %v is not ErrMalformedResponse", err)
	}
}

func FuzzDecodeOpenResponse(f *testing.F) {
	seed(f, func(fm Format) ([]byte, error) {
		return EncodeOpenResponse(fm, etsi004.OpenResponse{Status: 7, QoS: testQoS, KeyStreamID: testKSID})
	})
	f.Fuzz(func(t *testing.T, j bool, p []byte) {
		_, err := DecodeOpenResponse(formatOfBool(j), p)
		checkResponseErr(t, err)
	})
}

func FuzzDecodeGetKeyResponse(f *testing.F) {
	seed(f, func(fm Format) ([]byte, error) {
		return EncodeGetKeyResponse(fm, etsi004.GetKeyResponse{Index: 5, Key: []byte{1, 2, 3, 4}, Metadata: testMeta})
	})
	seed(f, func(fm Format) ([]byte, error) {
		return EncodeGetKeyResponse(fm, etsi004.GetKeyResponse{Status: 8, MetadataSize: 99})
	})
	f.Fuzz(func(t *testing.T, j bool, p []byte) {
		fm := formatOfBool(j)
		r, err := DecodeGetKeyResponse(fm, p)
		checkResponseErr(t, err)
		if err == nil && (r.Status == etsi004.StatusSuccessful) != (len(r.Key) > 0) {
			t.Fatalf("decoded status %d with %d key bytes", r.Status, len(r.Key))
		}
	})
}

func FuzzDecodeCloseResponse(f *testing.F) {
	seed(f, func(fm Format) ([]byte, error) { return EncodeCloseResponse(fm, etsi004.CloseResponse{Status: 3}) })
	f.Fuzz(func(t *testing.T, j bool, p []byte) {
		_, err := DecodeCloseResponse(formatOfBool(j), p)
		checkResponseErr(t, err)
	})
}
