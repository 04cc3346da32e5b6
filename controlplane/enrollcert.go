package controlplane

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/egw-project/egw/internal/jointoken"
	"github.com/egw-project/egw/internal/secret"
)

// Files of the enrollment listener's identity in the state directory.
const (
	EnrollCertFile = "enroll.crt"
	EnrollKeyFile  = "enroll.key" // mode 0600
)

// EnrollIdentity loads the enrollment listener's self-signed certificate from stateDir,
// making it (ECDSA P-256, 10 years) on first use. Join tokens pin the SHA-256 of its
// SubjectPublicKeyInfo, which it returns: it stays the same as long as the key file does.
func EnrollIdentity(stateDir string) (tls.Certificate, [sha256.Size]byte, error) {
	certPath, keyPath := filepath.Join(stateDir, EnrollCertFile), filepath.Join(stateDir, EnrollKeyFile)
	c, err := tls.LoadX509KeyPair(certPath, keyPath)
	if errors.Is(err, os.ErrNotExist) {
		if err := makeEnrollIdentity(certPath, keyPath); err != nil {
			return tls.Certificate{}, [sha256.Size]byte{}, fmt.Errorf("enrollment identity: %w", err)
		}
		c, err = tls.LoadX509KeyPair(certPath, keyPath)
	}
	if err != nil {
		return tls.Certificate{}, [sha256.Size]byte{}, fmt.Errorf("enrollment identity %s: %w", certPath, err)
	}
	if fi, err := os.Stat(keyPath); err != nil || fi.Mode().Perm()&0o077 != 0 {
		return tls.Certificate{}, [sha256.Size]byte{}, fmt.Errorf("enrollment identity: %s must have mode 0600", keyPath)
	}
	return c, jointoken.CertHash(c.Leaf), nil
}

func makeEnrollIdentity(certPath, keyPath string) error {
	if err := os.MkdirAll(filepath.Dir(certPath), 0o700); err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "egw enrollment"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(10, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := secret.Write(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})); err != nil {
		return err
	}
	return writeAtomic(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// writeAtomic writes data to path with mode: a temporary file, fsync, rename.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".egw-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
