package topology

import "github.com/qkms/qkms/internal/qkd"

// Limits on identifiers.
const (
	// MaxIDLen bounds node and SAE IDs (they become certificate CNs, whose
	// upper bound is 64 characters, RFC 5280 ub-common-name).
	MaxIDLen = 64
	// MaxLinkIDLen bounds link IDs: long enough for a generated
	// "a-b#n" ID between two nodes of MaxIDLen.
	MaxLinkIDLen = 160
)

// ValidID reports whether s can name a node, SAE or KME: 1 to MaxIDLen
// characters from [A-Za-z0-9_.-], and not "." or "..". Such IDs are safe as
// URL path segments, file names and certificate CNs unescaped.
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > MaxIDLen || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !idByte(s[i]) {
			return false
		}
	}
	return true
}

// ValidLinkID reports whether s can name a link: 1 to MaxLinkIDLen
// characters from [A-Za-z0-9_.~#-], and not "." or "..". '~' occurs in the
// shared topologies, '#' in generated IDs of parallel links (it must be
// percent-encoded in a URL).
func ValidLinkID(id qkd.LinkID) bool {
	s := string(id)
	if len(s) == 0 || len(s) > MaxLinkIDLen || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !idByte(c) && c != '~' && c != '#' {
			return false
		}
	}
	return true
}

func idByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '_' || c == '.' || c == '-'
}
