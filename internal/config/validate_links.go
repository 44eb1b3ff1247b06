package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/topology"
)

func (c *Config) validateLinks(v *validator) {
	seen := map[qkd.LinkID]int{}
	for i, l := range c.Links {
		at := fmt.Sprintf("links[%d]", i)
		if v.required(at+".id", string(l.ID)) {
			if !topology.ValidLinkID(l.ID) {
				v.add(at+".id", "invalid link ID %q: want 1-160 characters from [A-Za-z0-9_.~#-]", l.ID)
			}
			if j, dup := seen[l.ID]; dup {
				v.add(at+".id", "duplicate link %q (also links[%d])", l.ID, j)
			}
			seen[l.ID] = i
		}
		v.id(at+".peer", string(l.Peer))
		if l.Peer != "" && l.Peer == c.NodeID {
			v.add(at+".peer", "is this node (%q): a link joins two different nodes", l.Peer)
		}
		if v.required(at+".peer_addr", l.PeerAddr) {
			v.addr(at+".peer_addr", l.PeerAddr, false)
		}
		v.oneOf(at+".transport", l.Transport, TransportTCP, TransportUDP)
		c.checkPeerListener(v, at, l.Transport)
		if v.required(at+".psk_file", l.PSKFile) {
			checkPrivateFile(v, at+".psk_file", l.PSKFile)
		}
		validateMAC(v, at, l)
		if v.required(at+".device.addr", l.Device.Addr) {
			v.addr(at+".device.addr", l.Device.Addr, false)
		}
		v.oneOf(at+".device.transport", l.Device.Transport, TransportTCP, TransportUDP)
		if s := l.Device.KeyStreamID; s != "" {
			if _, err := qkd.ParseKeyID(s); err != nil {
				v.add(at+".device.key_stream_id", "invalid UUID %q", s)
			}
		}
	}
}

// validateMAC checks the link's ITS MAC scheme (docs/coap-profiles.md) and, for
// Wegman–Carter, its epoch length.
func validateMAC(v *validator, at string, l Link) {
	v.oneOf(at+".mac", l.MAC, MACPoly1305, MACWegmanCarter)
	switch {
	case l.MAC != MACWegmanCarter && l.MACEpoch != 0:
		v.add(at+".mac_epoch", "applies only to mac: %s (mac is %q)", MACWegmanCarter, l.MAC)
	case l.MAC == MACWegmanCarter && (l.MACEpoch < MinMACEpoch || l.MACEpoch > MaxMACEpoch || l.MACEpoch%2 != 0):
		v.add(at+".mac_epoch", "must be an even number of messages from %d to %d, got %d", MinMACEpoch, MaxMACEpoch, l.MACEpoch)
	}
}

// checkPeerListener reports a link whose peer would reach this node over a
// transport this node does not listen on.
func (c *Config) checkPeerListener(v *validator, at, transport string) {
	switch {
	case transport == TransportTCP && c.Listen.PeerTCP == "":
		v.add(at+".transport", "tcp, but listen.peer_tcp is off")
	case transport == TransportUDP && c.Listen.PeerUDP == "":
		v.add(at+".transport", "udp, but listen.peer_udp is off")
	}
}

// checkPrivateFile reports a PSK file that is missing, not a regular file,
// or readable by group or others.
func checkPrivateFile(v *validator, field, path string) {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		v.add(field, "file %s does not exist", path)
	case err != nil:
		v.add(field, "%v", err)
	case !fi.Mode().IsRegular():
		v.add(field, "%s is not a regular file", path)
	case fi.Mode().Perm()&0o077 != 0:
		v.add(field, "%s has mode %04o: a PSK file must not be accessible by group or others (chmod 600 %s)", path, fi.Mode().Perm(), path)
	}
}
