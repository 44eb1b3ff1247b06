package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/qkms/qkms/internal/etsi004"
	"github.com/qkms/qkms/internal/etsi004/coap004"
	"github.com/qkms/qkms/internal/etsi004/tcp004"
	"github.com/qkms/qkms/internal/netsim"
	"github.com/qkms/qkms/internal/pki"
	"github.com/qkms/qkms/internal/qkd"
)

// app004Flags are the connection flags of `qkms 004`.
type app004Flags struct {
	network, sae, binding, addr, ca, cert, key string
	timeout                                    time.Duration
}

// client004 is what both bindings' clients offer.
type client004 interface {
	OpenConnect(context.Context, etsi004.OpenRequest) (etsi004.OpenResponse, error)
	GetKey(context.Context, etsi004.GetKeyRequest) (etsi004.GetKeyResponse, error)
	Close(context.Context, etsi004.CloseRequest) (etsi004.CloseResponse, error)
}

// dial connects as the SAE: addresses and certificates come from
// network.json (--network, --sae) unless given explicitly.
func (f *app004Flags) dial(ctx context.Context) (client004, func(), error) {
	if f.network != "" {
		b, err := os.ReadFile(f.network)
		if err != nil {
			return nil, nil, err
		}
		var info netsim.Info
		if err := json.Unmarshal(b, &info); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", f.network, err)
		}
		var node qkd.NodeID
		for _, s := range info.SAEs {
			if string(s.ID) == f.sae {
				node, f.cert, f.key = s.Node, pick(f.cert, s.Cert), pick(f.key, s.Key)
			}
		}
		if node == "" {
			return nil, nil, fmt.Errorf("SAE %q is not in %s", f.sae, f.network)
		}
		f.ca = pick(f.ca, info.CA)
		for _, n := range info.Nodes {
			if n.ID == node && f.addr == "" {
				switch f.binding {
				case "tcp":
					f.addr = n.ETSI004TCPAddr
				case "dtls":
					f.addr = pick(n.ETSI004DTLSAddr, n.ETSI004Addr)
				default:
					f.addr = n.ETSI004Addr
				}
			}
		}
	}
	if f.addr == "" || f.ca == "" || f.cert == "" || f.key == "" {
		return nil, nil, errors.New("give --network and --sae, or --addr, --ca, --cert and --key")
	}
	cfg, err := pki.ClientTLSConfig(f.ca, f.cert, f.key, "")
	if err != nil {
		return nil, nil, err
	}
	switch f.binding {
	case "coap":
		c, err := coap004.DialTLS(ctx, f.addr, cfg, coap004.ClientOptions{})
		if err != nil {
			return nil, nil, err
		}
		return c, func() { _ = c.Hangup() }, nil
	case "dtls":
		c, err := coap004.DialDTLS(ctx, f.addr, cfg, coap004.ClientOptions{})
		if err != nil {
			return nil, nil, err
		}
		return c, func() { _ = c.Hangup() }, nil
	case "tcp":
		c, err := tcp004.Dial(ctx, f.addr, cfg)
		if err != nil {
			return nil, nil, err
		}
		return c, func() { _ = c.Disconnect() }, nil
	}
	return nil, nil, fmt.Errorf("--binding %q: coap, dtls or tcp", f.binding)
}

func pick(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func app004Cmd() *cobra.Command {
	var f app004Flags
	cmd := &cobra.Command{
		Use:   "004",
		Short: "Try an ETSI 004 key stream by hand: open, get, close (CoAP binding or the reference TCP/TLS framing)",
		Long: "Talks to a node's ETSI 004 interface as an application (its client certificate names it). With\n" +
			"--network DIR/network.json and --sae the node's address and the SAE's certificate come from the file.\n" +
			"Examples (qkms net up --topology line2.json --dir D):\n" +
			"  qkms 004 open  --network D/network.json --sae SAE_A1 --dest SAE_B1 --chunk 32\n" +
			"  qkms 004 open  --network D/network.json --sae SAE_B1 --binding tcp --dest SAE_A1 --ksid <KSID>\n" +
			"  qkms 004 get   --network D/network.json --sae SAE_A1 --ksid <KSID> --index 0\n" +
			"  qkms 004 close --network D/network.json --sae SAE_A1 --ksid <KSID>",
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.network, "network", "", "network.json of qkms net up")
	pf.StringVar(&f.sae, "sae", "", "the application (SAE ID) to act as")
	pf.StringVar(&f.binding, "binding", "coap", "coap (CoAP over TLS, coaps+tcp), dtls (CoAP over DTLS, coaps) or tcp (reference TCP/TLS framing)")
	pf.StringVar(&f.addr, "addr", "", "host:port of the node's ETSI 004 interface")
	pf.StringVar(&f.ca, "ca", "", "CA certificate (PEM)")
	pf.StringVar(&f.cert, "cert", "", "the application's client certificate (PEM)")
	pf.StringVar(&f.key, "key", "", "the application's private key (PEM)")
	pf.DurationVar(&f.timeout, "call-timeout", time.Minute, "bound on one call")

	var dest, ksid string
	var qos etsi004.QoS
	open := &cobra.Command{Use: "open", Short: "OPEN_CONNECT (no --ksid: the KMS allocates one)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := etsi004.OpenRequest{Source: f.sae, Destination: dest, QoS: qos}
			if ksid != "" {
				k, err := etsi004.ParseKSID(ksid)
				if err != nil {
					return err
				}
				req.KeyStreamID = k
			}
			return run004(cmd, &f, func(ctx context.Context, c client004) (any, error) {
				r, err := c.OpenConnect(ctx, req)
				return map[string]any{"status": r.Status, "status_text": r.Status.String(), "key_stream_id": r.KeyStreamID.String(), "qos": r.QoS}, err
			})
		}}
	of := open.Flags()
	of.StringVar(&dest, "dest", "", "the peer application (SAE ID or URI)")
	of.StringVar(&ksid, "ksid", "", "key stream ID to open (the peer's, or predefined)")
	of.Uint32Var(&qos.KeyChunkSize, "chunk", 0, "key_chunk_size, bytes (0: the KMS chooses)")
	of.Uint32Var(&qos.MaxBps, "max-bps", 0, "max_bps")
	of.Uint32Var(&qos.MinBps, "min-bps", 0, "min_bps")
	of.Uint32Var(&qos.Timeout, "timeout", 0, "timeout, ms")
	of.Uint32Var(&qos.TTL, "ttl", 0, "ttl, s")
	of.StringVar(&qos.MetadataMimetype, "mimetype", etsi004.MimeJSON, "metadata_mimetype")
	_ = open.MarkFlagRequired("dest")

	var index, msize uint32
	get := &cobra.Command{Use: "get", Short: "GET_KEY: one chunk (key printed in base64)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			k, err := etsi004.ParseKSID(ksid)
			if err != nil {
				return err
			}
			return run004(cmd, &f, func(ctx context.Context, c client004) (any, error) {
				r, err := c.GetKey(ctx, etsi004.GetKeyRequest{KeyStreamID: k, Index: index, MetadataSize: msize})
				out := map[string]any{"status": r.Status, "status_text": r.Status.String(), "index": r.Index}
				if len(r.Key) > 0 {
					out["key_buffer"] = base64.StdEncoding.EncodeToString(r.Key)
					clear(r.Key)
				}
				if len(r.Metadata) > 0 {
					out["metadata"] = string(r.Metadata)
				}
				if r.Status == etsi004.StatusMetadataTooSmall {
					out["metadata_size"] = r.MetadataSize
				}
				return out, err
			})
		}}
	get.Flags().StringVar(&ksid, "ksid", "", "key stream ID")
	get.Flags().Uint32Var(&index, "index", 0, "chunk index")
	get.Flags().Uint32Var(&msize, "metadata-size", 1024, "metadata buffer size (0: no metadata)")
	_ = get.MarkFlagRequired("ksid")

	closeCmd := &cobra.Command{Use: "close", Short: "CLOSE", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			k, err := etsi004.ParseKSID(ksid)
			if err != nil {
				return err
			}
			return run004(cmd, &f, func(ctx context.Context, c client004) (any, error) {
				r, err := c.Close(ctx, etsi004.CloseRequest{KeyStreamID: k})
				return map[string]any{"status": r.Status, "status_text": r.Status.String()}, err
			})
		}}
	closeCmd.Flags().StringVar(&ksid, "ksid", "", "key stream ID")
	_ = closeCmd.MarkFlagRequired("ksid")
	cmd.AddCommand(open, get, closeCmd)
	return cmd
}

// run004 dials, runs one call and prints its answer as JSON.
func run004(cmd *cobra.Command, f *app004Flags, call func(context.Context, client004) (any, error)) error {
	ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
	defer cancel()
	c, hangup, err := f.dial(ctx)
	if err != nil {
		return err
	}
	defer hangup()
	out, err := call(ctx, c)
	if err != nil {
		return err
	}
	return printJSON(cmd.OutOrStdout(), out)
}

func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}
