package node

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qkms/qkms/internal/config"
	"github.com/qkms/qkms/internal/device"
	"github.com/qkms/qkms/internal/device/pushproto"
	"github.com/qkms/qkms/internal/itsmac"
	"github.com/qkms/qkms/internal/kmsproto"
	"github.com/qkms/qkms/internal/link"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
	"github.com/qkms/qkms/internal/telemetry"
)

// nodeLink is a link with its transport, device and ingest meter.
type nodeLink struct {
	*link.Link
	transport *peerTransport
	dev       config.Device
	self      qkd.NodeID
	rate      rateMeter
	internal  *atomic.Int64 // QKD key bytes spent internally (MAC slots, batch checks)
	full      atomic.Bool   // the link holds max_link_material: new blocks are dropped
	n         *Node
}

// lateForwarder lets links be built before the relay engine that uses them.
type lateForwarder struct {
	mu sync.RWMutex
	f  link.Forwarder // guarded by mu
}

func (l *lateForwarder) set(f link.Forwarder) {
	l.mu.Lock()
	l.f = f
	l.mu.Unlock()
}

func (l *lateForwarder) HandleForward(ctx context.Context, in *link.Link, req kmsproto.ForwardKeysReq) (kmsproto.ForwardKeysResp, kmsproto.Code, string) {
	l.mu.RLock()
	f := l.f
	l.mu.RUnlock()
	if f == nil {
		return kmsproto.ForwardKeysResp{}, kmsproto.Retry, "relay not ready"
	}
	return f.HandleForward(ctx, in, req)
}

func (n *Node) newLinks(ctx context.Context, fwd link.Forwarder) error {
	dir := n.directory()
	for _, lc := range n.cfg.Links {
		psk, err := readPSK(lc.PSKFile)
		if err != nil {
			return fmt.Errorf("node: link %s: %w", lc.ID, err)
		}
		marker, err := n.checkPSKFresh(ctx, lc.ID, psk)
		if err != nil {
			psk.Wipe()
			return err
		}
		tr := &peerTransport{network: lc.Transport, addr: lc.PeerAddr, log: n.log.With("link", string(lc.ID))}
		internal := new(atomic.Int64)
		scheme, err := itsmac.ParseScheme(lc.MAC)
		if err != nil {
			psk.Wipe()
			return fmt.Errorf("node: link %s: %w", lc.ID, err)
		}
		l, err := link.New(link.Options{ID: lc.ID, Self: n.cfg.NodeID, Peer: lc.Peer, Store: n.store, Transport: tr,
			MAC: scheme, MACEpoch: lc.MACEpoch,
			PSK: psk, LocalSAE: func(s qkd.SAEID) bool { return dir[s] == n.cfg.NodeID },
			BatchBlocks: n.cfg.Keys.BatchBlocks, Logger: n.log, Observer: observer{m: n.metrics, internal: internal}, Forwarder: fwd})
		if err == nil {
			err = l.Init(ctx)
		}
		psk.Wipe()
		if err == nil && marker != "" {
			err = writeMarker(marker)
		}
		if err != nil {
			return fmt.Errorf("node: link %s: %w", lc.ID, err)
		}
		n.metrics.InitLink(lc.ID)
		n.links = append(n.links, &nodeLink{Link: l, transport: tr, dev: lc.Device, self: n.cfg.NodeID, n: n, internal: internal})
	}
	return nil
}

var errInactive = errors.New("node: inactive")

// checkPSKFresh refuses to bootstrap a link from a pre-shared key that
// bootstrapped it before (the store was zeroised or lost since): its MAC
// keys were used and must never be used again. Used keys are remembered by
// their SHA-256 in DATA_DIR/psk-used/, which zeroisation keeps.
// It returns the marker to write once the link was bootstrapped ("" if the
// store already holds the link).
func (n *Node) checkPSKFresh(ctx context.Context, id qkd.LinkID, psk secret.PSK) (string, error) {
	_, next, _, err := n.store.SlotBounds(ctx, id, n.cfg.NodeID)
	if err != nil {
		return "", fmt.Errorf("node: link %s: %w", id, err)
	}
	if next > 0 {
		return "", nil // bootstrapped from this store before: the PSK is not used again
	}
	sum := sha256.Sum256(psk.Expose())
	marker := filepath.Join(n.cfg.DataDir, "psk-used", hex.EncodeToString(sum[:]))
	if _, err := os.Stat(marker); err == nil {
		return "", fmt.Errorf("node: link %s: its pre-shared key was used before (the key store was zeroised or lost since); "+
			"provision a new pre-shared key at both ends", id)
	}
	return marker, nil
}

func writeMarker(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return os.WriteFile(path, nil, 0o600)
}

// readPSK reads a link's pre-shared key file; it must not be readable by
// group or others.
func readPSK(path string) (secret.PSK, error) {
	b, err := secret.ReadFile(path, 0)
	if err != nil {
		return secret.PSK{}, fmt.Errorf("pre-shared key: %w", err)
	}
	return secret.PSK{Bytes: secret.Adopt(b)}, nil
}

// runDevice keeps the link's QKD module connected and stores its blocks.
func (l *nodeLink) runDevice(ctx context.Context) error {
	if l.dev.Addr == "" {
		return nil
	}
	log := l.n.log.With("link", string(l.ID()), "device_addr", l.dev.Addr)
	var ksid pushproto.KeyStreamID
	if l.dev.KeyStreamID != "" {
		id, err := pushproto.ParseKeyStreamID(l.dev.KeyStreamID)
		if err != nil {
			return fmt.Errorf("node: link %s: key_stream_id: %w", l.ID(), err)
		}
		ksid = id
	}
	for ctx.Err() == nil && l.n.svc.Active() {
		var next uint64
		if st, err := l.n.store.Stats(ctx, l.ID()); err == nil && st.HasIndex {
			next = st.MaxIndex + 1
		}
		c, err := device.Dial(ctx, device.Options{Network: l.dev.Transport, Addr: l.dev.Addr,
			Source: "kms://" + string(l.self), Destination: "kms://" + string(l.Peer()),
			KeyStreamID: ksid, NextIndex: next, Logger: log})
		if err != nil {
			log.Warn("QKD module unreachable", "err", err)
			if !sleepCtx(ctx, time.Second) {
				return nil
			}
			continue
		}
		err = c.Run(ctx, l.deliver)
		_ = c.Close()
		if !l.n.svc.Active() {
			log.Info("node inactive: QKD module disconnected")
			return nil
		}
		if err != nil && !errors.Is(err, context.Canceled) {
			log.Warn("QKD module stream ended", "err", err)
			if !sleepCtx(ctx, time.Second) {
				return nil
			}
		}
	}
	return nil
}

func (l *nodeLink) deliver(ctx context.Context, b device.Block) error {
	defer b.Data.Wipe()
	if !l.n.svc.Active() {
		return errInactive // ends the device session
	}
	l.n.metrics.AddBlocks(l.ID(), telemetry.BlocksReceived, 1)
	if l.full.Load() {
		l.n.metrics.AddBlocks(l.ID(), telemetry.BlocksDropped, 1)
		return nil // the store holds max_link_material for this link: drop (the peer discards it too)
	}
	l.rate.add(b.Data.Len())
	if err := l.Ingest(ctx, b.Index, b.Data); err != nil {
		return err
	}
	l.n.metrics.AddBlocks(l.ID(), telemetry.BlocksStored, 1)
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// rateMeter measures the ingest rate over the last few seconds.
type rateMeter struct {
	mu      sync.Mutex
	total   int64     // guarded by mu
	last    int64     // guarded by mu
	lastAt  time.Time // guarded by mu
	current float64   // guarded by mu: bits per second
}

func (r *rateMeter) add(n int) {
	r.mu.Lock()
	r.total += int64(n)
	r.mu.Unlock()
}

// rate returns the last computed rate without updating it.
func (r *rateMeter) rate() float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.current
}

// bitsPerSecond updates and returns the rate (call about once a second).
func (r *rateMeter) bitsPerSecond() float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if !r.lastAt.IsZero() {
		if dt := now.Sub(r.lastAt).Seconds(); dt > 0 {
			inst := float64(r.total-r.last) * 8 / dt
			r.current = 0.7*r.current + 0.3*inst
		}
	}
	r.last, r.lastAt = r.total, now
	return r.current
}
