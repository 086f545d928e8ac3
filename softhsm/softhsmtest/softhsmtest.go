// Package softhsmtest gives tests real PKCS#11 tokens: SoftHSM2's, or
// opencryptoki's soft token when PORTVAKT_TEST_HSM=opencryptoki (see
// Implementation). Tests talk to them through the real PKCS#11 module:
// there is no mock of the HSM.
//
// SoftHSM2 reads its configuration once per module initialisation and the
// module is shared by the whole process, so each test binary gets one
// private SoftHSM2 directory (Main), and each test a token of its own in it
// (NewToken). opencryptoki's soft token is one per machine: test binaries
// take turns with it, and each test re-initialises it (see opencryptoki.go).
package softhsmtest

import (
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"github.com/portvakt/portvakt/devca"
	"github.com/portvakt/portvakt/eseal"
	"github.com/portvakt/portvakt/orgno"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portvakt/portvakt/hsm"
	"github.com/portvakt/portvakt/secret"
	"github.com/portvakt/portvakt/softhsm"
)

var (
	impl    string // SoftHSM2 or OpenCryptoki
	dir     softhsm.Dir
	module  string
	counter atomic.Int64
)

// Main prepares a private SoftHSM2 directory (on opencryptoki: waits its
// turn for the soft token), runs the tests and removes it. Call it from
// TestMain.
// Without the implementation the run fails: a test that skips the HSM
// would prove nothing.
func Main(m M) {
	os.Exit(run(m))
}

// M is what Main runs: a *testing.M, or a wrapper of one that does more
// around its Run while the HSM is still prepared, such as looking for
// goroutines the tests left behind (goleak.Find).
type M interface {
	Run() int
}

func run(m M) int {
	var err error
	if impl, err = chooseImplementation(); err != nil {
		fmt.Fprintln(os.Stderr, "softhsmtest:", err)
		return 2
	}
	if impl == OpenCryptoki {
		if err := prepareOpenCryptoki(); err != nil {
			fmt.Fprintln(os.Stderr, "softhsmtest:", err)
			return 2
		}
		return m.Run()
	}
	if module, err = softhsm.FindModule(); err != nil {
		fmt.Fprintln(os.Stderr, "softhsmtest:", err)
		return 2
	}
	tmp, err := os.MkdirTemp("", "portvakt-softhsm-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "softhsmtest:", err)
		return 2
	}
	defer os.RemoveAll(tmp)
	if dir, err = softhsm.Prepare(tmp); err == nil {
		err = dir.Activate()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "softhsmtest:", err)
		return 2
	}
	return m.Run()
}

// Token is an initialised token with its PINs.
type Token struct {
	hsm.Token
	SOPIN secret.Value
	slot  uint // opencryptoki only
}

// Dir is the SoftHSM2 directory of this test binary; empty on opencryptoki.
func Dir() softhsm.Dir { return dir }

// NewToken initialises a token with a unique label and random PINs (on
// opencryptoki the SO PIN is the default one: see opencryptoki.go).
func NewToken(t testing.TB) Token {
	t.Helper()
	if module == "" {
		t.Fatal("softhsmtest.Main was not called from TestMain")
	}
	if impl == OpenCryptoki {
		return newOpenCryptokiToken(t)
	}
	label := fmt.Sprintf("test-%d-%d", os.Getpid(), counter.Add(1))
	userPIN, _ := secret.New(rand.Text()[:16])
	soPIN, _ := secret.New(rand.Text()[:16])
	if err := hsm.InitToken(module, label, soPIN, userPIN); err != nil {
		t.Fatalf("initialising SoftHSM2 token: %v", err)
	}
	return Token{Token: hsm.Token{Module: module, Label: label, PIN: userPIN}, SOPIN: soPIN}
}

// NewKey generates a 2048-bit key in the token (the smallest allowed, to
// keep tests quick).
func (tok Token) NewKey(t testing.TB, label string) {
	t.Helper()
	if _, err := hsm.GenerateKey(tok.Token, hsm.KeySpec{Label: label, Bits: 2048}); err != nil {
		t.Fatalf("generating key %q: %v", label, err)
	}
}

// TestOrgNumber is the organisation number of the test eSeals (Digdir's,
// whose check digit is valid).
const TestOrgNumber = "991825827"

// NewCertifiedKey generates a key, has ca certify it through a CSR signed in
// the token, and imports the certificate and chain beside the key: the path
// an operator takes with `portvakt hsm keygen`, `csr` and `import-cert`. It
// returns the chain, the key's certificate first.
func (tok Token) NewCertifiedKey(t testing.TB, label string, ca *devca.CA) []*x509.Certificate {
	t.Helper()
	tok.NewKey(t, label)
	subject := eseal.Subject{OrgNumber: orgno.Number(TestOrgNumber), Organization: "Portvakt Test AS", CommonName: "Portvakt test eSeal"}
	der, err := hsm.CreateCSR(tok.Token, hsm.KeySelector{Label: label}, subject.Name())
	if err != nil {
		t.Fatalf("creating CSR: %v", err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.IssueFromCSR(csr, 365*24*time.Hour)
	if err != nil {
		t.Fatalf("issuing certificate: %v", err)
	}
	chain := append([]*x509.Certificate{cert}, ca.Chain()...)
	if _, err := hsm.ImportCertificates(tok.Token, hsm.KeySelector{Label: label}, chain, time.Now()); err != nil {
		t.Fatalf("importing certificate: %v", err)
	}
	return chain
}
