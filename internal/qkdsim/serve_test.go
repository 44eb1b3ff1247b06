package qkdsim

import (
	"bytes"
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"

	"github.com/qkms/qkms/internal/coapx"
	"github.com/qkms/qkms/internal/device/pushproto"
)

func TestServeUDPRefusesLargeBlocks(t *testing.T) {
	l, err := NewLink(Options{BlockSize: MaxUDPBlockSize + 1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Shutdown()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if err := l.End("a").ServeUDP(pc); !errors.Is(err, ErrBlockTooLargeForUDP) {
		t.Errorf("ServeUDP with %d-byte blocks = %v, want ErrBlockTooLargeForUDP", MaxUDPBlockSize+1, err)
	}
}

// TestControlResources drives /sim/fault and open_connect over CoAP/TCP in
// both encodings.
func TestControlResources(t *testing.T) {
	l, err := NewLink(Options{BlockSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Shutdown()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = l.End("a").ServeTCP(ln) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := coapx.DialTCP(ctx, ln.Addr().String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	post := func(path string, f pushproto.Format, body []byte, out any) codes.Code {
		t.Helper()
		cf := message.AppCBOR
		if f == pushproto.JSON {
			cf = message.AppJSON
		}
		resp, err := c.Post(ctx, path, cf, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if out != nil {
			p, _ := resp.ReadBody()
			if err := f.Unmarshal(p, out); err != nil {
				t.Fatalf("POST %s: answer %s: %v", path, p, err)
			}
		}
		return resp.Code()
	}

	var st FaultState
	if code := post(PathFault, pushproto.JSON, []byte(`{"end":"b","drop":2,"delay_ms":50,"pause":true}`), &st); code != codes.Changed {
		t.Fatalf("POST %s = %v", PathFault, code)
	}
	want := FaultState{End: "b", Drop: 2, DelayMS: 50, Pause: true}
	if st != want {
		t.Errorf("fault state = %+v, want %+v", st, want)
	}
	if f := l.End("b").Faults(); f.Drop != 2 || f.Delay != 50*time.Millisecond || !l.Paused() {
		t.Errorf("End(b).Faults() = %+v, paused %v", f, l.Paused())
	}
	one := uint32(1)
	p, _ := pushproto.CBOR.Marshal(FaultRequest{Flip: &one})
	if code := post(PathFault, pushproto.CBOR, p, &st); code != codes.Changed || st.End != "a" || st.Flip != 1 {
		t.Errorf("CBOR fault request = %v %+v, want end a with flip 1", code, st)
	}
	if code := post(PathFault, pushproto.JSON, []byte(`{"end":"c"}`), nil); code != codes.BadRequest {
		t.Errorf("fault for end c = %v, want 4.00", code)
	}

	var rep struct {
		Status      int    `json:"status"`
		KeyStreamID string `json:"key_stream_id"`
	}
	if code := post(pushproto.PathOpenConnect, pushproto.JSON, []byte(`{"source":"kms://A","key_stream_id":null}`), &rep); code != codes.Changed {
		t.Fatalf("JSON open_connect = %v", code)
	}
	if k, err := pushproto.ParseKeyStreamID(rep.KeyStreamID); err != nil || k != l.KeyStreamID() || rep.Status != 1 {
		t.Errorf("JSON open_connect = %+v, want status 1 and KSID %s", rep, l.KeyStreamID())
	}
	if code := post(pushproto.PathOpenConnect, pushproto.JSON, []byte(`{"destination":"x"}`), nil); code != codes.BadRequest {
		t.Errorf("open_connect without source = %v, want 4.00", code)
	}
	var refused pushproto.OpenConnectReply
	p, _ = pushproto.CBOR.Marshal(pushproto.OpenConnect{Source: "kms://A", QoS: pushproto.QoS{KeyChunkSize: 7}})
	if code := post(pushproto.PathOpenConnect, pushproto.CBOR, p, &refused); code != codes.NotAcceptable || refused.Status != pushproto.StatusQoSNotMet || refused.QoS.KeyChunkSize != 64 {
		t.Errorf("open_connect for 7-byte chunks = %v %+v, want 4.06, status 7 and a 64-byte counter-proposal", code, refused)
	}
	resp, err := c.Get(ctx, pushproto.PathGetKey)
	if err != nil || resp.Code() != codes.BadRequest {
		t.Errorf("GET get_key without ksid = %v, %v; want 4.00", resp.Code(), err)
	}
}

// TestRegisterAndDeregister checks the first response without key and that
// Observe 1 ends the registration.
func TestRegisterAndDeregister(t *testing.T) {
	l, err := NewLink(Options{BlockSize: 32})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Shutdown()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := l.End("a")
	go func() { _ = e.ServeTCP(ln) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := coapx.DialTCP(ctx, ln.Addr().String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p, _ := pushproto.CBOR.Marshal(pushproto.OpenConnect{Source: "kms://A"})
	if _, err := c.Post(ctx, pushproto.PathOpenConnect, message.AppCBOR, bytes.NewReader(p)); err != nil {
		t.Fatal(err)
	}
	got := make(chan pushproto.Notification, 4)
	q := message.Option{ID: message.URIQuery, Value: []byte("ksid=" + l.KeyStreamID().String())}
	obs, err := c.Observe(ctx, pushproto.PathGetKey, func(m *pool.Message) {
		body, _ := m.ReadBody()
		n, err := pushproto.DecodeNotification(body)
		if err != nil {
			t.Error(err)
			return
		}
		got <- n
	}, q)
	if err != nil {
		t.Fatal(err)
	}
	if n := <-got; n.Status != pushproto.StatusInsufficientKey || n.Key.Len() != 0 {
		t.Errorf("first response with an empty buffer = %+v, want status 2 without key", n)
	}
	if err := l.Produce(1); err != nil {
		t.Fatal(err)
	}
	if n := <-got; n.Status != pushproto.StatusSuccess || n.Index != 0 || n.Key.Len() != 32 || n.KeyStreamID != l.KeyStreamID() {
		t.Errorf("notification = %+v, want block 0", n)
	}
	if err := obs.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "deregistration", func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		return e.obs == nil
	})
}

// TestDelayHoldsBlocksNotTheRegistration: with the delay fault on, the
// first response comes at once (without key) and blocks come when due.
func TestDelayHoldsBlocksNotTheRegistration(t *testing.T) {
	clock := newFakeClock()
	l, err := NewLink(Options{BlockSize: 32, Clock: clock, A: Faults{Delay: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Shutdown()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = l.End("a").ServeTCP(ln) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := coapx.DialTCP(ctx, ln.Addr().String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p, _ := pushproto.CBOR.Marshal(pushproto.OpenConnect{Source: "kms://A"})
	if _, err := c.Post(ctx, pushproto.PathOpenConnect, message.AppCBOR, bytes.NewReader(p)); err != nil {
		t.Fatal(err)
	}
	if err := l.Produce(2); err != nil {
		t.Fatal(err)
	}
	got := make(chan pushproto.Notification, 4)
	q := message.Option{ID: message.URIQuery, Value: []byte("ksid=" + l.KeyStreamID().String())}
	if _, err := c.Observe(ctx, pushproto.PathGetKey, func(m *pool.Message) {
		body, _ := m.ReadBody()
		n, err := pushproto.DecodeNotification(body)
		if err != nil {
			t.Error(err)
			return
		}
		got <- n
	}, q); err != nil {
		t.Fatal(err)
	}
	if n := <-got; n.Status != pushproto.StatusInsufficientKey || n.Index != 0 {
		t.Errorf("first response = %+v, want status 2 (block 0 not yet due)", n)
	}
	select {
	case n := <-got:
		t.Fatalf("notification before the delay passed: %+v", n)
	default:
	}
	clock.Advance(time.Minute)
	for i := uint32(0); i < 2; {
		n := <-got
		if n.Status == pushproto.StatusInsufficientKey && n.Index == i { // a heartbeat, also due
			continue
		}
		if n.Status != pushproto.StatusSuccess || n.Index != i || n.AgeMS != 60_000 {
			t.Errorf("notification = %+v, want block %d aged 60000 ms", n, i)
		}
		i++
	}
}
