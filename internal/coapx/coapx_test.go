package coapx

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
)

func newTestRouter(t *testing.T) *Router {
	t.Helper()
	r := NewRouter(nil)
	err := r.Handle("/echo", `rt="test.echo";ct=60`, func(w mux.ResponseWriter, req *mux.Message) {
		body, _ := req.ReadBody()
		Respond(w, nil, codes.Changed, message.AppCBOR, body)
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestWellKnownAndEchoUDPAndTCP(t *testing.T) {
	r := newTestRouter(t)
	s := NewServer(r.Mux(), nil)
	t.Cleanup(s.Shutdown)

	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.ServeUDP(pc) }()
	go func() { _ = s.ServeTCP(tl) }()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	uc, err := DialUDP(context.Background(), pc.LocalAddr().String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	tc, err := DialTCP(context.Background(), tl.Addr().String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()

	want := `</echo>;rt="test.echo";ct=60`
	for name, get := range map[string]func() ([]byte, error){
		"udp": func() ([]byte, error) {
			m, err := uc.Get(ctx, WellKnownCore)
			if err != nil {
				return nil, err
			}
			return m.ReadBody()
		},
		"tcp": func() ([]byte, error) {
			m, err := tc.Get(ctx, WellKnownCore)
			if err != nil {
				return nil, err
			}
			return m.ReadBody()
		},
	} {
		got, err := get()
		if err != nil || string(got) != want {
			t.Errorf("%s GET %s = %q, %v; want %q", name, WellKnownCore, got, err, want)
		}
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 600) // > one UDP block
	for name, post := range map[string]func() ([]byte, error){
		"udp": func() ([]byte, error) {
			m, err := uc.Post(ctx, "/echo", message.AppCBOR, bytes.NewReader(big))
			if err != nil {
				return nil, err
			}
			return io.ReadAll(m.Body())
		},
		"tcp": func() ([]byte, error) {
			m, err := tc.Post(ctx, "/echo", message.AppCBOR, bytes.NewReader(big))
			if err != nil {
				return nil, err
			}
			return io.ReadAll(m.Body())
		},
	} {
		got, err := post()
		if err != nil || !bytes.Equal(got, big) {
			t.Errorf("%s POST /echo (%d bytes) = %d bytes, %v", name, len(big), len(got), err)
		}
	}
}
