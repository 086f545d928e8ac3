package rotation

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// State is where an environment's rotation stands. It is kept on the HSM
// beside the keys it names (a private data object, as the audit head
// is), so that it survives a restart and every replica on the HSM reads
// the same one: which key signs (Current), the one on its way in (Next)
// and the one on its way out (Previous).
type State struct {
	// Current is the key new grants are signed with.
	Current Key `json:"current"`
	// Next is the key being registered and probed; nil when none is.
	Next *Key `json:"next,omitempty"`
	// Previous is the key Current replaced, until it has left the JWKS
	// and the HSM; nil when none is on its way out.
	Previous *Key `json:"previous,omitempty"`
	// Driver is the audit instance of the replica that drives the
	// rotation under way (its steps are that replica's); the others
	// follow the state. Empty for a single instance.
	Driver string `json:"driver,omitempty"`
	// Touched is when the driver last stored the state: it does so at
	// least every few probe intervals while a rotation is under way, and
	// a replica that finds it silent much longer takes the rotation over
	// (the driver was stopped for good, as a pod replaced in a rollout).
	Touched time.Time `json:"touched,omitzero"`
	// Requested is when an operator asked for a rotation that has not
	// begun yet (`portvakt keys rotate`); zero when none is asked for.
	Requested time.Time `json:"requested,omitzero"`
}

// Key is one key of a rotation: its label in the HSM, its kid in the
// JWKS, and the times of its steps, zero until they happen.
type Key struct {
	Label string `json:"label"`
	KID   string `json:"kid"`
	// Created is when the HSM made it; zero for a key made before
	// rotation (the configured one).
	Created time.Time `json:"created,omitzero"`
	// Registered is when the JWKS got it.
	Registered time.Time `json:"registered,omitzero"`
	// Accepted is when Maskinporten first took a grant with its kid.
	Accepted time.Time `json:"accepted,omitzero"`
	// Switched is when it stopped signing new grants (Previous only).
	Switched time.Time `json:"switched,omitzero"`
	// RetireAfter is when the last token it got has expired (Previous
	// only): it may leave the JWKS then.
	RetireAfter time.Time `json:"retire_after,omitzero"`
	// Unregistered is when it left the JWKS (Previous only).
	Unregistered time.Time `json:"unregistered,omitzero"`
}

// stateVersion is the format Marshal writes; Parse refuses others, so an
// older daemon never acts on a newer format it does not understand.
const stateVersion = 1

type stored struct {
	Version int `json:"version"`
	State
}

// Marshal is s as stored on the HSM.
func (s State) Marshal() []byte {
	b, err := json.Marshal(stored{Version: stateVersion, State: s})
	if err != nil {
		panic(err) // strings and times only
	}
	return b
}

// ErrBadState means the stored state could not be read: the rotation
// stops rather than act on a state it does not understand.
var ErrBadState = errors.New("the rotation state on the HSM cannot be read")

// ParseState reads a state Marshal wrote, refusing one that is not
// whole: a key without label or kid, a Next or Previous that is Current.
func ParseState(data []byte) (State, error) {
	var st stored
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return State{}, fmt.Errorf("%w: %v", ErrBadState, err)
	}
	if dec.More() {
		return State{}, fmt.Errorf("%w: data after the state", ErrBadState)
	}
	if st.Version != stateVersion {
		return State{}, fmt.Errorf("%w: version %d; this daemon reads version %d (was it written by a newer one?)", ErrBadState, st.Version, stateVersion)
	}
	s := st.State
	keys := []*Key{&s.Current, s.Next, s.Previous}
	seen := map[string]bool{}
	for _, k := range keys {
		if k == nil {
			continue
		}
		if k.Label == "" || k.KID == "" {
			return State{}, fmt.Errorf("%w: a key without label or kid", ErrBadState)
		}
		if seen[k.KID] || seen["label:"+k.Label] {
			return State{}, fmt.Errorf("%w: key %q (kid %s) appears twice", ErrBadState, k.Label, k.KID)
		}
		seen[k.KID], seen["label:"+k.Label] = true, true
	}
	return s, nil
}
