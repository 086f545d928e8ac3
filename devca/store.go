package devca

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// File names used by Save and Load.
const (
	RootCertFile    = "root.pem"
	IssuingCertFile = "issuing.pem"
	RootKeyFile     = "root-key.pem"
	IssuingKeyFile  = "issuing-key.pem"
)

const (
	certMode = 0o644
	keyMode  = 0o600
)

// Save writes the CA to dir as PEM: RootCertFile and IssuingCertFile
// (mode 0644) and RootKeyFile and IssuingKeyFile (PKCS#8, mode 0600). dir is
// created with mode 0700 if it does not exist.
//
// Save never overwrites: if any of the four files already exists it fails
// and leaves dir untouched, because replacing a CA silently would orphan
// every certificate it issued. Each file is fully written to a temporary
// file in dir first and only then linked into place, so a failure does not
// leave a half-written file behind.
func (ca *CA) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("devca: creating CA directory: %w", err)
	}
	rootKey, err := x509.MarshalPKCS8PrivateKey(ca.rootKey)
	if err != nil {
		return fmt.Errorf("devca: encoding root CA key: %w", err)
	}
	issuingKey, err := x509.MarshalPKCS8PrivateKey(ca.issuingKey)
	if err != nil {
		return fmt.Errorf("devca: encoding issuing CA key: %w", err)
	}
	files := []struct {
		name  string
		block *pem.Block
		mode  fs.FileMode
	}{
		// Keys first: if a later step fails, no certificate is left
		// without its key.
		{RootKeyFile, &pem.Block{Type: "PRIVATE KEY", Bytes: rootKey}, keyMode},
		{IssuingKeyFile, &pem.Block{Type: "PRIVATE KEY", Bytes: issuingKey}, keyMode},
		{RootCertFile, &pem.Block{Type: "CERTIFICATE", Bytes: ca.Root.Raw}, certMode},
		{IssuingCertFile, &pem.Block{Type: "CERTIFICATE", Bytes: ca.Issuing.Raw}, certMode},
	}

	// Fail early with a clear message; the link below is what actually
	// guarantees nothing is overwritten, even against a concurrent Save.
	for _, f := range files {
		path := filepath.Join(dir, f.name)
		if _, err := os.Lstat(path); err == nil {
			return fmt.Errorf("devca: %s already exists; refusing to overwrite an existing CA in %s (use Load, or choose an empty directory)", path, dir)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("devca: checking %s: %w", path, err)
		}
	}

	temps := make([]string, 0, len(files))
	defer func() {
		for _, t := range temps {
			os.Remove(t)
		}
	}()
	for _, f := range files {
		tmp, err := writeTemp(dir, f.name, pem.EncodeToMemory(f.block), f.mode)
		if err != nil {
			return err
		}
		temps = append(temps, tmp)
	}

	// os.Link, unlike os.Rename, fails if the target exists, so a CA that
	// appeared since the check above is not clobbered.
	var placed []string
	for i, f := range files {
		path := filepath.Join(dir, f.name)
		if err := os.Link(temps[i], path); err != nil {
			for _, p := range placed {
				os.Remove(p)
			}
			return fmt.Errorf("devca: placing %s (nothing was saved): %w", path, err)
		}
		placed = append(placed, path)
	}
	return syncDir(dir)
}

// writeTemp writes data to a new temporary file in dir, named after final,
// with the given mode, and flushes it to disk.
func writeTemp(dir, final string, data []byte, mode fs.FileMode) (path string, err error) {
	f, err := os.CreateTemp(dir, "."+final+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("devca: creating temporary file for %s: %w", final, err)
	}
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("devca: closing temporary file for %s: %w", final, cerr)
		}
		if err != nil {
			os.Remove(f.Name())
		}
	}()
	// CreateTemp already uses 0600; Chmod makes certificates readable and
	// is not subject to the umask.
	if err := f.Chmod(mode); err != nil {
		return "", fmt.Errorf("devca: setting mode of %s: %w", final, err)
	}
	if _, err := f.Write(data); err != nil {
		return "", fmt.Errorf("devca: writing %s: %w", final, err)
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("devca: flushing %s: %w", final, err)
	}
	return f.Name(), nil
}

// syncDir flushes directory entries so the new files survive a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("devca: opening %s to flush it: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("devca: flushing directory %s: %w", dir, err)
	}
	return nil
}

// Load reads a CA written by Save from dir. It checks that each key matches
// its certificate, that the root is self-signed and that the issuing CA is
// signed by the root, so a mixed-up directory is caught here rather than as
// a confusing verification failure later.
func Load(dir string) (*CA, error) {
	root, err := readCert(filepath.Join(dir, RootCertFile))
	if err != nil {
		return nil, err
	}
	issuing, err := readCert(filepath.Join(dir, IssuingCertFile))
	if err != nil {
		return nil, err
	}
	rootKey, err := readKey(filepath.Join(dir, RootKeyFile), root, filepath.Join(dir, RootCertFile))
	if err != nil {
		return nil, err
	}
	issuingKey, err := readKey(filepath.Join(dir, IssuingKeyFile), issuing, filepath.Join(dir, IssuingCertFile))
	if err != nil {
		return nil, err
	}
	if err := root.CheckSignatureFrom(root); err != nil {
		return nil, fmt.Errorf("devca: %s is not a self-signed CA certificate: %w", filepath.Join(dir, RootCertFile), err)
	}
	if err := issuing.CheckSignatureFrom(root); err != nil {
		return nil, fmt.Errorf("devca: %s is not signed by %s; the files come from different CAs: %w",
			filepath.Join(dir, IssuingCertFile), filepath.Join(dir, RootCertFile), err)
	}
	if !issuing.IsCA {
		return nil, fmt.Errorf("devca: %s is not a CA certificate", filepath.Join(dir, IssuingCertFile))
	}
	return &CA{Root: root, Issuing: issuing, rootKey: rootKey, issuingKey: issuingKey}, nil
}

// readPEM reads path and returns the DER of its single PEM block of type
// want.
func readPEM(path, want string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("devca: reading CA file: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("devca: %s contains no PEM data; expected a %s block", path, want)
	}
	if block.Type != want {
		return nil, fmt.Errorf("devca: %s holds a %q PEM block, want %q", path, block.Type, want)
	}
	return block.Bytes, nil
}

// readCert reads and parses the PEM certificate in path.
func readCert(path string) (*x509.Certificate, error) {
	der, err := readPEM(path, "CERTIFICATE")
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("devca: parsing certificate in %s: %w", path, err)
	}
	return cert, nil
}

// readKey reads a PKCS#8 key from path and checks it belongs to cert, read
// from certPath.
func readKey(path string, cert *x509.Certificate, certPath string) (crypto.Signer, error) {
	der, err := readPEM(path, "PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("devca: parsing PKCS#8 private key in %s: %w", path, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("devca: key in %s is %T, which cannot sign", path, key)
	}
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("devca: private key in %s does not match the certificate in %s; the files come from different CAs", path, certPath)
	}
	return signer, nil
}
