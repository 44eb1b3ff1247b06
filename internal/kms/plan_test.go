package kms

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/qkms/qkms/internal/keystore"
	"github.com/qkms/qkms/internal/qkd"
)

func TestPlanResize(t *testing.T) {
	id := func(n byte) qkd.KeyID { return qkd.KeyID{0: n} }
	key := func(n byte, bits int) keystore.Key { return keystore.Key{ID: id(n), SizeBits: bits} }
	tests := []struct {
		name       string
		keys       []keystore.Key
		size, need int
		want       []resizeOp
	}{
		{"nothing needed", []keystore.Key{key(1, 512)}, 256, 0, nil},
		{"no keys", nil, 256, 1, nil},
		{"split one", []keystore.Key{key(1, 512)}, 256, 2, []resizeOp{{split: id(1), parts: 2}}},
		{"smallest split first", []keystore.Key{key(1, 1024), key(2, 512)}, 256, 1, []resizeOp{{split: id(2), parts: 2}}},
		{"two splits", []keystore.Key{key(1, 1024), key(2, 512)}, 256, 5, []resizeOp{{split: id(2), parts: 2}, {split: id(1), parts: 4}}},
		{"not a multiple", []keystore.Key{key(1, 384)}, 256, 1, nil},
		{"merge", []keystore.Key{key(1, 128), key(2, 128), key(3, 128)}, 256, 1, []resizeOp{{merge: []qkd.KeyID{id(1), id(2)}}}},
		{"merge largest size first", []keystore.Key{key(1, 64), key(2, 64), key(3, 64), key(4, 64), key(5, 128), key(6, 128)}, 256, 1,
			[]resizeOp{{merge: []qkd.KeyID{id(5), id(6)}}}},
		{"merges of two sizes", []keystore.Key{key(1, 64), key(2, 64), key(3, 64), key(4, 64), key(5, 128), key(6, 128)}, 256, 2,
			[]resizeOp{{merge: []qkd.KeyID{id(5), id(6)}}, {merge: []qkd.KeyID{id(1), id(2), id(3), id(4)}}}},
		{"too few to merge", []keystore.Key{key(1, 128)}, 256, 1, nil},
		{"split and merge", []keystore.Key{key(1, 512), key(2, 128), key(3, 128)}, 256, 3,
			[]resizeOp{{split: id(1), parts: 2}, {merge: []qkd.KeyID{id(2), id(3)}}}},
		{"same size ignored", []keystore.Key{key(1, 256)}, 256, 1, nil},
		{"too many round trips", []keystore.Key{key(1, 512), key(2, 512), key(3, 512), key(4, 512), key(5, 512)}, 256, 10, nil},
		{"at most four", []keystore.Key{key(1, 512), key(2, 512), key(3, 512), key(4, 512), key(5, 512)}, 256, 8,
			[]resizeOp{{split: id(1), parts: 2}, {split: id(2), parts: 2}, {split: id(3), parts: 2}, {split: id(4), parts: 2}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := planResize(tt.keys, tt.size, tt.need, maxResizeOps)
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(resizeOp{})); diff != "" {
				t.Errorf("planResize (-want +got):\n%s", diff)
			}
		})
	}
}
