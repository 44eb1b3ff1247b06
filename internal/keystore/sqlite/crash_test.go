package sqlite

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

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
	if dir == "" || os.Getenv(crashModeEnv) != "" {
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

// takeCrashKeys is how many keys TestKill9Takes stores for its child.
const takeCrashKeys = 6000

// TestTakeCrashChild is the process that TestKill9Takes kills: workers take
// keys through TakeForPair (the fast path, with background refills and
// flushes) while another goroutine keeps forcing the journal into the
// database; each key ID is written to stdout after its take returned.
func TestTakeCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" || os.Getenv(crashModeEnv) != "take" {
		t.Skip("run by TestKill9Takes")
	}
	s, err := Open(t.Context(), Options{Path: filepath.Join(dir, "keys.db")})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	setFill(s, pairReq(1), 64) // many refills
	var wg sync.WaitGroup
	var out sync.Mutex
	for w := range 4 {
		wg.Go(func() {
			r := pairReq(1 + w%2)
			for {
				keys, err := s.TakeForPair(ctx, r)
				if err != nil {
					t.Error(err)
					return
				}
				var b []byte
				for _, k := range keys {
					b = fmt.Appendf(b, "%x\n", k.ID[:])
				}
				out.Lock()
				_, _ = os.Stdout.Write(b) // one write per take, unbuffered
				out.Unlock()
			}
		})
	}
	wg.Go(func() {
		for i := 0; ; i++ {
			var err error
			switch i % 3 {
			case 0:
				_, err = s.CountKeys(ctx, pairReq(0))
			case 1:
				_, err = s.Stats(ctx, link)
			default:
				_, err = s.ExpireKeys(ctx, time.Now())
			}
			if err != nil {
				t.Error(err)
				return
			}
		}
	})
	wg.Wait()
}

const crashModeEnv = "QKMS_KEYSTORE_CRASH_MODE"

// TestKill9Takes kills a process in the middle of taking keys through the
// fast path at a random point and reopens the store: no key the child
// returned is there any more (nor can it be taken again); the keys leased
// to its caches and not returned may be gone (burnt by the replay), and
// every key still there has its bytes.
func TestKill9Takes(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	for round := range 3 {
		t.Run("round="+strconv.Itoa(round), func(t *testing.T) { kill9Takes(t, 300+rand.IntN(2500)) })
	}
}

func kill9Takes(t *testing.T, killAfter int) {
	dir := t.TempDir()
	s := openAt(t, dir)
	var keys []keystore.Key
	for len(keys) < takeCrashKeys {
		keys = append(keys, readyKeys(t, s, 1000, nil)...)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^TestTakeCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashModeEnv+"=take")
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	returned := make(map[qkd.KeyID]bool)
	sc := bufio.NewScanner(pipe)
	read := func() bool {
		if !sc.Scan() {
			return false
		}
		raw, err := hex.DecodeString(sc.Text())
		if err != nil || len(raw) != 16 {
			t.Fatalf("child wrote %q", sc.Text())
		}
		id := qkd.KeyID(raw)
		if returned[id] {
			t.Errorf("child was given key %s twice", id)
		}
		returned[id] = true
		return true
	}
	for len(returned) < killAfter && read() {
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	for read() { // what it wrote before it died was returned too
	}
	_ = cmd.Wait()
	if len(returned) < killAfter {
		t.Fatalf("child stopped after %d keys:\n%s", len(returned), stderr.String())
	}

	s = openAt(t, dir)
	ctx := t.Context()
	left, err := s.CountKeys(ctx, pairReq(0))
	if err != nil {
		t.Fatal(err)
	}
	burnt := takeCrashKeys - len(returned) - left
	t.Logf("killed after %d keys returned; %d left; %d leased and burnt", len(returned), left, burnt)
	if burnt < 0 {
		t.Errorf("%d keys returned + %d left of %d: more keys than were stored", len(returned), left, takeCrashKeys)
	}
	for id := range returned {
		if _, err := s.TakeByID(ctx, keystore.TakeRequest{Master: master, Caller: slave, IDs: []qkd.KeyID{id}}); !errors.Is(err, qkd.ErrNotFound) {
			t.Fatalf("key %s returned before the kill: TakeByID after = %v, want ErrNotFound", id, err)
		}
	}
	rest, err := s.TakeForPair(ctx, pairReq(left))
	if err != nil {
		t.Fatal(err)
	}
	byID := make(map[qkd.KeyID][]byte, len(keys))
	for _, k := range keys {
		byID[k.ID] = k.Data.Expose()
	}
	for _, k := range rest {
		if returned[k.ID] {
			t.Errorf("key %s returned before the kill is delivered again", k.ID)
		}
		if !bytes.Equal(byID[k.ID], k.Data.Expose()) {
			t.Errorf("key %s after the kill has other bytes", k.ID)
		}
	}
}
