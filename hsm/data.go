package hsm

import (
	"fmt"

	"github.com/miekg/pkcs11"

	"github.com/portvakt/portvakt/internal/p11"
)

// application is CKA_APPLICATION of Portvakt's data objects.
const application = "portvakt"

// ReadObjects returns the values of Portvakt's private data objects named
// label on the token: normally one; two after a WriteObject that was cut
// short between storing the new value and removing the old.
func ReadObjects(t Token, label string) ([][]byte, error) {
	var values [][]byte
	err := t.withRawLogin(func(raw *rawSession) error {
		objects, err := raw.DataObjects(raw.handle, application, label)
		if err != nil {
			return err
		}
		for _, o := range objects {
			values = append(values, o.Value)
		}
		return nil
	})
	return values, err
}

// WriteObject replaces the value of Portvakt's private data object label:
// in place when the token lets it (one write), else by storing the new
// value first and removing the old ones after, so that a cut between the
// two leaves both rather than none.
func WriteObject(t Token, label string, value []byte) error {
	return t.withRawLogin(func(raw *rawSession) error {
		old, err := raw.DataObjects(raw.handle, application, label)
		if err != nil {
			return err
		}
		if len(old) == 1 {
			err := raw.SetAttributeValue(raw.handle, old[0].Handle, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, value)})
			if err == nil {
				return nil
			}
		}
		if _, err := raw.CreateData(raw.handle, application, label, value); err != nil {
			return err
		}
		for _, o := range old {
			if err := raw.DestroyObject(raw.handle, o.Handle); err != nil {
				return fmt.Errorf("removing the old value of data object %q: %w", label, err)
			}
		}
		return nil
	})
}

// withRawLogin runs f on a logged-in raw session, without a crypto11
// context: light enough to run beside the daemon's own context on the
// token (it borrows the module the daemon initialised, and shares its
// login where the module shares logins).
func (t Token) withRawLogin(f func(raw *rawSession) error) error {
	m, err := p11.Open(t.Module)
	if err != nil {
		return err
	}
	session, err := m.OpenSession(t.Label)
	if err != nil {
		m.Close()
		return err
	}
	raw := &rawSession{Module: m, handle: session}
	defer raw.close()
	if err := t.login(raw); err != nil {
		return err
	}
	defer p11.LockObjects(t.Module)()
	return f(raw)
}
