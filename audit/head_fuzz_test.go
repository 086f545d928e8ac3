package audit

import (
	"testing"
	"time"
)

// FuzzLatestHead: whatever the HSM's data object holds, decoding it
// returns a head or an error, never a panic; a head decoded re-encodes to
// one that decodes the same.
func FuzzLatestHead(f *testing.F) {
	f.Add(Head{Checkpoint: 12, Time: time.Unix(1700000000, 0).UTC(), Seal: Seal{Instance: "a", From: 1, HeadSeq: 11, HeadHash: "00", Key: "ff", Signature: "AA=="}}.Marshal())
	f.Add([]byte(`{"checkpoint":-1}`))
	f.Add([]byte(`{"seal":null}`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, value []byte) {
		head, ok, err := LatestHead([][]byte{value})
		if err != nil || !ok {
			return
		}
		again, ok, err := LatestHead([][]byte{head.Marshal()})
		if err != nil || !ok || again.Checkpoint != head.Checkpoint || again.Seal != head.Seal {
			t.Fatalf("a decoded head does not survive re-encoding: %+v, then %+v, %v", head, again, err)
		}
		_ = head.String()
	})
}
