package coapx_test

import (
	"net"
	"os/exec"
	"strings"
	"testing"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"

	"github.com/qkms/qkms/internal/coapx"
	"github.com/qkms/qkms/internal/coapx/coapxtest"
)

// TestLibcoapDiscovery asks libcoap's coap-client for /.well-known/core over
// UDP and TCP.
func TestLibcoapDiscovery(t *testing.T) {
	client := coapxtest.Client(t)
	r := coapx.NewRouter(nil)
	if err := r.Handle("/kms/v1/get_status", `rt="qkms.kms";ct=60`, func(w mux.ResponseWriter, _ *mux.Message) {
		coapx.Respond(w, nil, codes.Changed, message.AppCBOR, nil)
	}); err != nil {
		t.Fatal(err)
	}
	s := coapx.NewServer(r.Mux(), nil)
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
	for _, uri := range []string{
		"coap://" + pc.LocalAddr().String() + "/.well-known/core",
		"coap+tcp://" + tl.Addr().String() + "/.well-known/core",
	} {
		out, err := exec.Command(client, "-B", "10", "-m", "get", uri).CombinedOutput()
		if err != nil || !strings.Contains(string(out), `</kms/v1/get_status>;rt="qkms.kms";ct=60`) {
			t.Errorf("coap-client GET %s = %q, %v", uri, out, err)
		}
	}
}
