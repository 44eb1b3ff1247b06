package secret

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, mode fs.FileMode, data []byte) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // past the umask
			t.Fatal(err)
		}
		return p
	}
	data := []byte("0123456789")
	tests := []struct {
		name    string
		path    string
		max     int64
		want    []byte
		wantErr error
	}{
		{"private", write("private", 0o600, data), 0, data, nil},
		{"owner read-only", write("readonly", 0o400, data), 0, data, nil},
		{"limited", write("limited", 0o600, data), 4, data[:4], nil},
		{"group readable", write("group", 0o640, data), 0, nil, ErrExposedFile},
		{"world readable", write("world", 0o604, data), 0, nil, ErrExposedFile},
		{"absent", filepath.Join(dir, "absent"), 0, nil, fs.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadFile(tt.path, tt.max)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || got != nil {
					t.Fatalf("ReadFile = %q, %v; want %v", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || !bytes.Equal(got, tt.want) {
				t.Fatalf("ReadFile = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
