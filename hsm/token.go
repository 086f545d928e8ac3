// Package hsm manages the key's life on a PKCS#11 token: initialising a
// token, generating a key inside it, requesting and importing its
// certificate, importing an existing PKCS#12 file, and listing what is
// there. It works with any PKCS#11 module; SoftHSM2 is the development
// default.
//
// Keys are always created sensitive and not extractable, and every
// operation that writes several objects removes what it wrote if a later
// step fails, so a token is never left half-changed.
package hsm

import (
	"errors"
	"fmt"
	"strings"

	"github.com/ThalesGroup/crypto11"
	"github.com/miekg/pkcs11"

	"github.com/portvakt/portvakt/internal/p11"
	"github.com/portvakt/portvakt/secret"
)

// Token names a token and how to log in to it.
type Token struct {
	Module string
	Label  string
	PIN    secret.Value
}

// maxLabelLength is the size of CK_TOKEN_INFO's label field.
const maxLabelLength = 32

// InitToken initialises a new token labelled label on the first free slot
// of the module, and sets its security officer and user PINs. It refuses a
// label that is already in use: two tokens with one label could not be told
// apart, and Portvakt selects tokens only by label.
func InitToken(module, label string, soPIN, userPIN secret.Value) error {
	if label == "" || len(label) > maxLabelLength {
		return fmt.Errorf("token label %q: it must be 1 to %d bytes", label, maxLabelLength)
	}
	if soPIN.IsZero() || userPIN.IsZero() {
		return errors.New("initialising a token needs both a security officer PIN and a user PIN")
	}
	m, err := p11.Open(module)
	if err != nil {
		return err
	}
	defer m.Close()
	if _, err := m.FindSlot(label); err == nil {
		return fmt.Errorf("a token labelled %q already exists; choose another label", label)
	}
	slot, info, err := freeSlot(m)
	if err != nil {
		return err
	}
	// A user PIN the token refuses would fail C_InitPIN after C_InitToken
	// has already made the token: check both PINs first.
	if err := checkPINLengths(info, soPIN, userPIN); err != nil {
		return fmt.Errorf("initialising token %q: %w", label, err)
	}
	if err := m.Ctx.InitToken(slot, soPIN.Reveal(), label); err != nil {
		if errors.Is(err, pkcs11.Error(pkcs11.CKR_PIN_INCORRECT)) {
			// SoftHSM2 sets the SO PIN given; opencryptoki checks it against
			// the token's current one.
			return fmt.Errorf("initialising token %q: the module checks the security officer PIN against the token's current one instead of setting it (opencryptoki's is 87654321 until changed with `pkcsconf -P`): give that PIN: %w", label, err)
		}
		return fmt.Errorf("initialising token %q: %w", label, err)
	}
	// SoftHSM2 moves a freshly initialised token to a new slot number:
	// look it up again by label.
	session, err := m.OpenSession(label)
	if err != nil {
		return err
	}
	defer func() { _ = m.CloseSession(session) }()
	if err := m.Login(session, pkcs11.CKU_SO, soPIN.Reveal()); err != nil {
		return fmt.Errorf("logging in to the new token %q as security officer: %w", label, err)
	}
	defer func() { _ = m.Logout(session) }()
	if err := m.InitPIN(session, userPIN.Reveal()); err != nil {
		return fmt.Errorf("setting the user PIN of token %q: %w", label, err)
	}
	return nil
}

func freeSlot(m *p11.Module) (uint, pkcs11.TokenInfo, error) {
	slots, err := m.GetSlotList(true)
	if err != nil {
		return 0, pkcs11.TokenInfo{}, fmt.Errorf("listing slots: %w", err)
	}
	for _, slot := range slots {
		info, err := m.GetTokenInfo(slot)
		if err == nil && info.Flags&pkcs11.CKF_TOKEN_INITIALIZED == 0 {
			return slot, info, nil
		}
	}
	return 0, pkcs11.TokenInfo{}, fmt.Errorf("module %s has no slot with an uninitialised token", m.Path())
}

// checkPINLengths refuses PINs outside the token's ulMinPinLen and
// ulMaxPinLen (SoftHSM2: 4 to 255 bytes; opencryptoki 3.8's soft token: 4
// to 8, shorter than the PINs `hsm init --create-pins` makes).
func checkPINLengths(info pkcs11.TokenInfo, soPIN, userPIN secret.Value) error {
	for _, pin := range []struct {
		name  string
		value secret.Value
	}{{"security officer PIN", soPIN}, {"user PIN", userPIN}} {
		n := uint(len(pin.value.Reveal()))
		if n < info.MinPinLen || (info.MaxPinLen > 0 && n > info.MaxPinLen) {
			return fmt.Errorf("the %s has %d bytes; this token takes %d to %d", pin.name, n, info.MinPinLen, info.MaxPinLen)
		}
	}
	return nil
}

// open logs in to the token with crypto11 and borrows a raw session on it
// for the operations crypto11 lacks. In PKCS#11 the login state belongs to
// the application, and for most modules the raw session is of the same
// application as crypto11's, so it shares the login. p11-kit's client
// module makes each load its own application (its own connection to the
// server), so the raw session logs in too; CKR_USER_ALREADY_LOGGED_IN is
// the answer where the login is shared. It never logs out: that would log
// out crypto11's sessions as well.
func (t Token) open() (*crypto11.Context, *rawSession, error) {
	ctx, err := crypto11.Configure(&crypto11.Config{
		Path:        t.Module,
		TokenLabel:  t.Label,
		Pin:         t.PIN.Reveal(),
		MaxSessions: 2,
	})
	if err != nil {
		return nil, nil, p11.ExplainOpenError(t.Module, t.Label, err)
	}
	m, err := p11.Open(t.Module)
	if err != nil {
		_ = ctx.Close()
		return nil, nil, err
	}
	session, err := m.OpenSession(t.Label)
	if err != nil {
		m.Close()
		_ = ctx.Close()
		return nil, nil, err
	}
	raw := &rawSession{Module: m, handle: session}
	if err := t.login(raw); err != nil {
		raw.close()
		_ = ctx.Close()
		return nil, nil, err
	}
	return ctx, raw, nil
}

// login logs the raw session in, accepting a login the module already
// shares with it (CKR_USER_ALREADY_LOGGED_IN).
func (t Token) login(raw *rawSession) error {
	if err := raw.Login(raw.handle, pkcs11.CKU_USER, t.PIN.Reveal()); err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN)) {
		return p11.ExplainOpenError(t.Module, t.Label, err)
	}
	return nil
}

// rawSession is a miekg/pkcs11 session borrowed beside a crypto11 context.
type rawSession struct {
	*p11.Module
	handle pkcs11.SessionHandle
}

func (r *rawSession) close() {
	_ = r.CloseSession(r.handle)
	r.Module.Close()
}

// withToken runs f with the token open, and closes it afterwards.
func (t Token) withToken(f func(ctx *crypto11.Context, raw *rawSession) error) error {
	ctx, raw, err := t.open()
	if err != nil {
		return err
	}
	defer func() {
		raw.close()
		_ = ctx.Close()
	}()
	defer p11.LockObjects(t.Module)()
	return f(ctx, raw)
}

// KeySelector picks a private key by label and/or id (CKA_LABEL, CKA_ID).
type KeySelector struct {
	Label string
	ID    []byte
}

func (k KeySelector) String() string {
	var parts []string
	if k.Label != "" {
		parts = append(parts, fmt.Sprintf("label %q", k.Label))
	}
	if len(k.ID) > 0 {
		parts = append(parts, fmt.Sprintf("id %x", k.ID))
	}
	if len(parts) == 0 {
		return "(no key selected)"
	}
	return strings.Join(parts, " ")
}

// findKey returns the one private key matching sel.
func findKey(raw *rawSession, sel KeySelector) (p11.KeyObject, error) {
	if sel.Label == "" && len(sel.ID) == 0 {
		return p11.KeyObject{}, errors.New("select the key by label or id")
	}
	keys, err := raw.PrivateKeys(raw.handle)
	if err != nil {
		return p11.KeyObject{}, err
	}
	var found []p11.KeyObject
	for _, k := range keys {
		if (sel.Label == "" || k.Label == sel.Label) && (len(sel.ID) == 0 || string(k.ID) == string(sel.ID)) {
			found = append(found, k)
		}
	}
	switch len(found) {
	case 0:
		return p11.KeyObject{}, fmt.Errorf("no private key with %s on the token (`portvakt hsm list` shows what is there)", sel)
	case 1:
		return found[0], nil
	default:
		return p11.KeyObject{}, fmt.Errorf("%d private keys match %s; select by both label and id", len(found), sel)
	}
}
