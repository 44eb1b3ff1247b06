package secret

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// ErrExposedFile is returned for a file of secrets that group or others
// may access (any of the mode bits 0o077).
var ErrExposedFile = errors.New("secret: file accessible to group or others")

// ReadFile reads a file of secret material (private keys, key-encryption
// keys): at most max bytes (0: no limit), refusing a file group or others
// may access with an error wrapping ErrExposedFile, before any byte is
// read. An absent file is an error wrapping fs.ErrNotExist. The caller
// wipes the result (Wipe).
func ReadFile(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %v, want 0600", ErrExposedFile, path, st.Mode().Perm())
	}
	var r io.Reader = f
	if max > 0 {
		r = io.LimitReader(f, max)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		Wipe(b)
		return nil, err
	}
	return b, nil
}
