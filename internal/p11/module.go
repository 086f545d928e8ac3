package p11

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/miekg/pkcs11"
)

// Module is a borrowed handle on a PKCS#11 module.
type Module struct {
	*pkcs11.Ctx
	path  string
	owned bool // we initialised it, so we finalise it
}

// Open loads the module at path. If nothing in the process has initialised
// it yet, Open does, and Close finalises it again; otherwise the module stays
// initialised for its other users (crypto11 contexts).
func Open(path string) (*Module, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("PKCS#11 module: %w", err)
	}
	ctx := pkcs11.New(path)
	if ctx == nil {
		return nil, fmt.Errorf("PKCS#11 module %s could not be loaded (is it a PKCS#11 library for this architecture?)", path)
	}
	m := &Module{Ctx: ctx, path: path, owned: true}
	if err := ctx.Initialize(); err != nil {
		if !errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
			ctx.Destroy()
			return nil, fmt.Errorf("initialising PKCS#11 module %s: %w", path, err)
		}
		m.owned = false
	}
	return m, nil
}

// Close releases the handle, finalising the module only if Open initialised it.
func (m *Module) Close() {
	if m.owned {
		_ = m.Finalize()
	}
	m.Destroy()
}

// Path is the module's file name.
func (m *Module) Path() string { return m.path }

// ErrTokenNotFound is returned when no slot holds a token with the label.
var ErrTokenNotFound = errors.New("token not found")

// ErrNoInitialisedToken is the ErrTokenNotFound of a module that lists no
// initialised token at all: what a network HSM's client shows while it is
// not connected, and SoftHSM2 for a moment when another process rewrites
// the token's files as it loads them (SoftHSMv2 issue 757). Unlike a label
// missing among the tokens present, it may pass by itself.
var ErrNoInitialisedToken error = noInitialisedToken{}

type noInitialisedToken struct{}

func (noInitialisedToken) Error() string { return ErrTokenNotFound.Error() }
func (noInitialisedToken) Unwrap() error { return ErrTokenNotFound }

// FindSlot returns the slot holding the initialised token labelled label.
// Tokens are always chosen by label: slot numbers change when tokens are
// added (SoftHSM2 renumbers them) or an HSM is reconfigured.
func (m *Module) FindSlot(label string) (uint, error) {
	slots, err := m.slotList()
	if err != nil {
		return 0, fmt.Errorf("listing PKCS#11 slots: %w", err)
	}
	var labels []string
	for _, slot := range slots {
		info, err := m.GetTokenInfo(slot)
		if err != nil {
			continue // a slot that cannot answer cannot be ours
		}
		if info.Flags&pkcs11.CKF_TOKEN_INITIALIZED == 0 {
			continue
		}
		if info.Label == label {
			return slot, nil
		}
		labels = append(labels, fmt.Sprintf("%q", info.Label))
	}
	if len(labels) == 0 {
		return 0, fmt.Errorf("%w: no token is labelled %q: the module %s has no initialised token", ErrNoInitialisedToken, label, m.path)
	}
	return 0, fmt.Errorf("%w: no token is labelled %q in %s (tokens present: %s)", ErrTokenNotFound, label, m.path, strings.Join(labels, ", "))
}

// slotList is C_GetSlotList of the slots with a token. Listing is two
// calls, one that counts and one that fills; a slot added in between (a
// network HSM's client while its server comes back, measured with
// p11-kit's) makes the second answer CKR_BUFFER_TOO_SMALL, which PKCS#11
// means as "ask again".
func (m *Module) slotList() ([]uint, error) {
	for tries := 1; ; tries++ {
		slots, err := m.GetSlotList(true)
		var rv pkcs11.Error
		if tries < 5 && errors.As(err, &rv) && rv == pkcs11.CKR_BUFFER_TOO_SMALL {
			continue
		}
		return slots, err
	}
}

// OpenSession opens a read-write session on the token labelled label. The
// login state of PKCS#11 is per application, so the session is logged in
// whenever a crypto11 context on the same token is.
func (m *Module) OpenSession(label string) (pkcs11.SessionHandle, error) {
	slot, err := m.FindSlot(label)
	if err != nil {
		return 0, err
	}
	session, err := m.Ctx.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return 0, fmt.Errorf("opening a session on token %q: %w", label, err)
	}
	return session, nil
}
