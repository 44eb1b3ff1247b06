package sqlite

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/keystore/storetest"
	"github.com/qkms/qkms/internal/qkd"
	"github.com/qkms/qkms/internal/secret"
)

const crashDirEnv = "QKMS_KEYSTORE_CRASH_DIR"

// crashKeyID names the key made from block idx.
func crashKeyID(idx uint64) qkd.KeyID {
	var id qkd.KeyID
	binary.BigEndian.PutUint64(id[8:], idx)
	id[6], id[8] = 0x40, 0x80|id[8]&0x3f
	return id
}

// crashStep turns block idx into one Ready key, in three transactions, and
// rotates the KEK every fifth step.
func crashStep(ctx context.Context, s *Store, idx uint64) error {
	data := secret.From(storetest.Pattern(link, idx, 32))
	if err := s.AddBlock(ctx, keystore.Block{Link: link, Index: idx, Data: data}); err != nil {
		return err
	}
	if err := s.ConfirmBlocks(ctx, link, []uint64{idx}, 0); err != nil {
		return err
	}
	k := keystore.Key{ID: crashKeyID(idx), State: keystore.KeyReady, Master: master, Slaves: []qkd.SAEID{slave}, Pending: []qkd.SAEID{slave}, SizeBits: 256}
	if err := s.Allocate(ctx, keystore.Allocation{Link: link, Pieces: []keystore.Piece{{Index: idx, Len: 32}}, Keys: []keystore.Key{k}}); err != nil {
		return err
	}
	if idx%5 == 0 {
		return s.RotateKEK(ctx)
	}
	return nil
}

// TestCrashChild is the process that TestKill9 kills.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("run by TestKill9")
	}
	s, err := Open(t.Context(), Options{Path: filepath.Join(dir, "keys.db")})
	if err != nil {
		t.Fatal(err)
	}
	for idx := uint64(0); idx < 1_000_000; idx++ {
		if err := crashStep(t.Context(), s, idx); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintln(os.Stdout, idx) // unbuffered: the parent sees it at once
	}
}

// TestKill9 kills a process in the middle of writing and checks that the
// store reopens in a consistent, committed state: every block became a key
// with the right bytes, except possibly the last one, which is still a block.
func TestKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a process")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	last := readUntil(t, bufio.NewScanner(out), 40)
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if last < 40 {
		t.Fatalf("child stopped after step %d:\n%s", last, stderr.String())
	}

	s := openAt(t, dir)
	st, err := s.Stats(t.Context(), link)
	if err != nil {
		t.Fatal(err)
	}
	if st.MaxIndex < uint64(last) {
		t.Fatalf("MaxIndex after reopening = %d, but step %d had committed", st.MaxIndex, last)
	}
	for idx := uint64(0); idx <= st.MaxIndex; idx++ {
		checkCrashStep(t, s, idx, idx == st.MaxIndex)
	}
}

func readUntil(t *testing.T, sc *bufio.Scanner, n int) int {
	last := -1
	for last < n && sc.Scan() {
		v, err := strconv.Atoi(sc.Text())
		if err != nil {
			t.Fatalf("child wrote %q", sc.Text())
		}
		last = v
	}
	return last
}

// checkCrashStep checks that block idx became its key, or (only for the
// last step) is still a block with its bytes.
func checkCrashStep(t *testing.T, s *Store, idx uint64, lastStep bool) {
	t.Helper()
	want := storetest.Pattern(link, idx, 32)
	keys, err := s.TakeByID(t.Context(), keystore.TakeRequest{Master: master, Caller: slave, IDs: []qkd.KeyID{crashKeyID(idx)}})
	if err == nil {
		if !bytes.Equal(keys[0].Data.Expose(), want) {
			t.Errorf("key of step %d has other bytes", idx)
		}
		return
	}
	blocks, berr := s.GetBlocks(t.Context(), link, []uint64{idx})
	if !lastStep || berr != nil || len(blocks) != 1 || !bytes.Equal(blocks[0].Data.Expose(), want) {
		t.Errorf("step %d: no key (%v) and no intact block (%d blocks, %v)", idx, err, len(blocks), berr)
	}
}
