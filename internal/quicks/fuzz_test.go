package quicks_test

import (
	"encoding/json"
	"testing"

	"github.com/qkms/qkms/internal/quicks"
)

// fuzzDecoder checks that dec never panics, that every error is a client
// error, and that what it accepts survives a round trip: encoding the
// decoded value and decoding that again succeeds and encodes the same.
func fuzzDecoder[T any](f *testing.F, dec func([]byte) (T, error), seeds ...string) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"a":null}`))
	f.Add([]byte(`[1,{"x":[]}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := dec(data)
		if err != nil {
			if _, ok := err.(quicks.FieldErrors); !ok {
				if _, ok := err.(*quicks.FieldError); !ok {
					t.Fatalf("decode error %T %v is not a field error", err, err)
				}
			}
			return
		}
		b1, err := json.Marshal(&v)
		if err != nil {
			t.Fatalf("json.Marshal(decoded) = %v", err)
		}
		v2, err := dec(b1)
		if err != nil {
			t.Fatalf("decode(encode(decoded)) = %v for %s", err, b1)
		}
		b2, err := json.Marshal(&v2)
		if err != nil || string(b1) != string(b2) {
			t.Fatalf("round trip changed the message:\n%s\n%s", b1, b2)
		}
	})
}

func seed(name string) string {
	for _, d := range decoders {
		if d.name == name {
			return d.valid
		}
	}
	panic(name)
}

// Requests of sdn_to_kms_api.yaml.
func FuzzDecodeStateChange(f *testing.F) {
	fuzzDecoder(f, quicks.DecodeStateChange, seed("StateChange"))
}
func FuzzDecodeDeviceRegistration(f *testing.F) {
	fuzzDecoder(f, quicks.DecodeDeviceRegistration, seed("DeviceRegistration"))
}
func FuzzDecodeDeviceUpdate(f *testing.F) {
	fuzzDecoder(f, quicks.DecodeDeviceUpdate, seed("DeviceUpdate"))
}
func FuzzDecodeRelayConfig(f *testing.F) {
	fuzzDecoder(f, quicks.DecodeRelayConfig, seed("RelayConfig"))
}
func FuzzDecodeRelayUpdate(f *testing.F) {
	fuzzDecoder(f, quicks.DecodeRelayUpdate, seed("RelayUpdate"))
}

// Requests of kms_to_sdn_api.yaml.
func FuzzDecodeLinkRegistration(f *testing.F) {
	fuzzDecoder(f, quicks.DecodeLinkRegistration, seed("LinkRegistration"))
}
func FuzzDecodeRegistrationUpdate(f *testing.F) {
	fuzzDecoder(f, quicks.DecodeRegistrationUpdate, seed("RegistrationUpdate"))
}
func FuzzDecodeKMSRegistration(f *testing.F) {
	fuzzDecoder(f, quicks.DecodeKMSRegistration, seed("KMSRegistration"))
}
func FuzzDecodeStatusNotification(f *testing.F) {
	fuzzDecoder(f, quicks.DecodeStatusNotification, seed("StatusNotification"))
}
func FuzzDecodeEvent(f *testing.F) {
	fuzzDecoder(f, quicks.DecodeEvent, seed("Event"))
}

// Answers the clients decode.
func FuzzDecodeAnswers(f *testing.F) {
	for _, d := range decoders {
		f.Add([]byte(d.valid))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, d := range decoders {
			_ = d.decode(data) // must not panic
		}
	})
}

func FuzzDecodeProblem(f *testing.F) {
	fuzzDecoder(f, func(b []byte) (quicks.Problem, error) {
		p, err := quicks.DecodeProblem(b)
		if err != nil {
			return quicks.Problem{}, err
		}
		return *p, nil
	}, seed("Problem"))
}
