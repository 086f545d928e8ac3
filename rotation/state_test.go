package rotation

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestStateRoundTrip(t *testing.T) {
	at := time.Date(2027, 3, 1, 6, 0, 0, 0, time.UTC)
	st := State{
		Current:  Key{Label: "portvakt-prod-20270301T060000Z", KID: "new", Created: at, Registered: at.Add(time.Second), Accepted: at.Add(time.Minute)},
		Previous: &Key{Label: "registered-0", KID: "old", Switched: at.Add(2 * time.Minute), RetireAfter: at.Add(5 * time.Minute)},
		Driver:   "r0",
	}
	got, err := ParseState(st.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Marshal()) != string(st.Marshal()) {
		t.Errorf("round trip:\n got %s\nwant %s", got.Marshal(), st.Marshal())
	}
	if !got.Previous.RetireAfter.Equal(st.Previous.RetireAfter) || got.Next != nil {
		t.Errorf("round trip lost times or added a key: %+v", got)
	}
}

// TestParseStateRefuses: a state that is not whole stops the rotation,
// and says why.
func TestParseStateRefuses(t *testing.T) {
	tests := []struct {
		name, data, want string
	}{
		{"not JSON", `{"version":1,`, "unexpected EOF"},
		{"newer version", `{"version":2,"current":{"label":"a","kid":"k"}}`, "version 2"},
		{"no version", `{"current":{"label":"a","kid":"k"}}`, "version 0"},
		{"unknown field", `{"version":1,"current":{"label":"a","kid":"k"},"nxet":null}`, "unknown field"},
		{"current without kid", `{"version":1,"current":{"label":"a"}}`, "without label or kid"},
		{"next without label", `{"version":1,"current":{"label":"a","kid":"k"},"next":{"kid":"n"}}`, "without label or kid"},
		{"next is current", `{"version":1,"current":{"label":"a","kid":"k"},"next":{"label":"b","kid":"k"}}`, "appears twice"},
		{"previous shares a label", `{"version":1,"current":{"label":"a","kid":"k"},"previous":{"label":"a","kid":"p"}}`, "appears twice"},
		{"data after", `{"version":1,"current":{"label":"a","kid":"k"}} {}`, "data after"},
		{"bad time", `{"version":1,"current":{"label":"a","kid":"k","created":"yesterday"}}`, "cannot parse"},
	}
	for _, tt := range tests {
		_, err := ParseState([]byte(tt.data))
		if !errors.Is(err, ErrBadState) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v; want ErrBadState saying %q", tt.name, err, tt.want)
		}
	}
}

// FuzzParseState: whatever the HSM's data object holds, ParseState
// returns a whole state or ErrBadState, and a state it returns reads back
// the same.
func FuzzParseState(f *testing.F) {
	at := time.Date(2027, 3, 1, 6, 0, 0, 0, time.UTC)
	f.Add(State{Current: Key{Label: "a", KID: "k"}}.Marshal())
	f.Add(State{Current: Key{Label: "a", KID: "k", Created: at}, Next: &Key{Label: "b", KID: "n", Registered: at}, Requested: at, Driver: "r1"}.Marshal())
	f.Add([]byte(`{"version":1,"current":{"label":"a","kid":"k"},"previous":{"label":"b","kid":"p","retire_after":"2027-03-01T06:00:00Z"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := ParseState(data)
		if err != nil {
			if !errors.Is(err, ErrBadState) {
				t.Fatalf("error without ErrBadState: %v", err)
			}
			return
		}
		again, err := ParseState(st.Marshal())
		if err != nil {
			t.Fatalf("a parsed state does not parse again: %v", err)
		}
		if string(again.Marshal()) != string(st.Marshal()) {
			t.Fatalf("not stable: %s then %s", st.Marshal(), again.Marshal())
		}
	})
}
