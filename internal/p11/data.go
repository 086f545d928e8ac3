package p11

import (
	"fmt"

	"github.com/miekg/pkcs11"
)

// DataObject is a CKO_DATA object: a named value an application keeps on
// the token.
type DataObject struct {
	Handle pkcs11.ObjectHandle
	Value  []byte
}

// DataObjects returns the private data objects of application app with
// label label, on the session's token (which must be logged in).
func (m *Module) DataObjects(session pkcs11.SessionHandle, app, label string) ([]DataObject, error) {
	handles, err := m.findObjects(session, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_DATA),
		pkcs11.NewAttribute(pkcs11.CKA_APPLICATION, app),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
	})
	if err != nil {
		return nil, err
	}
	objects := make([]DataObject, 0, len(handles))
	for _, h := range handles {
		attrs, err := m.GetAttributeValue(session, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)})
		if err != nil {
			return nil, fmt.Errorf("reading data object %q: %w", label, err)
		}
		objects = append(objects, DataObject{Handle: h, Value: attrs[0].Value})
	}
	return objects, nil
}

// CreateData stores a private data object of application app on the
// session's token: only a logged-in user can read or change it.
func (m *Module) CreateData(session pkcs11.SessionHandle, app, label string, value []byte) (pkcs11.ObjectHandle, error) {
	h, err := m.CreateObject(session, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_DATA),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_APPLICATION, app),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE, value),
	})
	if err != nil {
		return 0, fmt.Errorf("storing data object %q on the token: %w", label, err)
	}
	return h, nil
}
