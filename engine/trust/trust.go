// Package trust makes coordinators prove who they are to each other: a
// small certificate authority, instance certificates whose identity is the
// instance name, and the TLS 1.3 configurations (client certificates on
// both ends) that coordinator ↔ coordinator links use.
//
// An authority is a directory:
//
//	DIR/ca.crt              the CA certificate (PEM)
//	DIR/ca.key              its private key (PEM, 0600); absent where only
//	                        the operator may issue certificates
//	DIR/certs/NAME.crt      instance NAME's certificate, signed by the CA,
//	DIR/certs/NAME.key      with the URI SAN ambr://instance/NAME; key 0600
//
// Locally, ambr creates one under the registry directory on first use
// (Local) and issues each instance its certificate when it first runs.
// Across hosts the operator makes one (`ambr certs init`, `ambr certs
// issue`) and hands each host the CA certificate and its instances' files;
// both are the same code (Open), only the source differs.
//
// What it protects: a process that cannot read the authority's files (it
// runs as another user, or on another host without them) cannot pass for
// an instance, and a coordinator never takes a hello whose name is not the
// one its peer's certificate carries. What it does not: a process of the
// same user that can read ca.key can issue itself any name, and root can
// read everything. Nothing here is hand-made cryptography: crypto/tls and
// crypto/x509 do all of it.
package trust

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gofrs/flock"
)

// Validity of the certificates this package issues. An instance
// certificate that expires within RenewBefore is issued again when its
// instance starts, where the CA key is at hand.
const (
	CAValidity       = 10 * 365 * 24 * time.Hour
	InstanceValidity = 365 * 24 * time.Hour
	RenewBefore      = 30 * 24 * time.Hour
)

// LocalDirName is the authority's directory under a registry directory.
const LocalDirName = ".tls"

// Authority is a CA directory: its certificate always, its key where it
// may issue.
type Authority struct {
	dir  string
	cert *x509.Certificate
	key  crypto.Signer // nil if the directory holds no ca.key
	pool *x509.CertPool
}

// Dir returns the authority's directory.
func (a *Authority) Dir() string { return a.dir }

// CanIssue reports whether the authority holds its key.
func (a *Authority) CanIssue() bool { return a.key != nil }

// Local returns the authority of a local registry, creating it on first
// use, under registryDir/.tls. Concurrent first uses agree on one CA.
func Local(registryDir string) (*Authority, error) {
	dir := filepath.Join(registryDir, LocalDirName)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("trust: create the local CA directory: %w", err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if _, err := os.Stat(filepath.Join(dir, "ca.crt")); errors.Is(err, fs.ErrNotExist) {
		if err := initCA(dir, "ambr local CA"); err != nil {
			return nil, err
		}
	}
	return Open(dir)
}

// Init creates a new authority in dir (created if missing). It refuses a
// directory that already holds a CA: issuing from two CAs under one name
// would split the instances that trust each other.
func Init(dir, commonName string) (*Authority, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("trust: %w", err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if _, err := os.Stat(filepath.Join(dir, "ca.crt")); err == nil {
		return nil, fmt.Errorf("trust: %s already holds a CA (ca.crt); use it, or choose another directory", dir)
	}
	if err := initCA(dir, commonName); err != nil {
		return nil, err
	}
	return Open(dir)
}

func initCA(dir, commonName string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("trust: generate the CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"ambr"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("trust: make the CA certificate: %w", err)
	}
	if err := writeKey(filepath.Join(dir, "ca.key"), key); err != nil {
		return err
	}
	return writePEM(filepath.Join(dir, "ca.crt"), "CERTIFICATE", der, 0o644)
}

// Open loads the authority in dir: ca.crt, and ca.key if it is there.
func Open(dir string) (*Authority, error) {
	b, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return nil, fmt.Errorf("trust: no CA certificate in %s: %w (make one with `ambr certs init %s`)", dir, err, dir)
	}
	cert, err := parseCert(b)
	if err != nil {
		return nil, fmt.Errorf("trust: %s: %w", filepath.Join(dir, "ca.crt"), err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("trust: %s is not a CA certificate", filepath.Join(dir, "ca.crt"))
	}
	a := &Authority{dir: dir, cert: cert, pool: x509.NewCertPool()}
	a.pool.AddCert(cert)
	kb, err := os.ReadFile(filepath.Join(dir, "ca.key"))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("trust: read the CA key: %w", err)
	default:
		key, err := parseKey(kb)
		if err != nil {
			return nil, fmt.Errorf("trust: %s: %w", filepath.Join(dir, "ca.key"), err)
		}
		a.key = key
	}
	return a, nil
}

// Issue makes a certificate for instance name, valid from notBefore for
// validFor, and writes it with its key under certs/. It replaces an older
// one.
func (a *Authority) Issue(name string, notBefore time.Time, validFor time.Duration) error {
	if a.key == nil {
		return fmt.Errorf("trust: %s holds no CA key (ca.key): certificates are issued where it is (`ambr certs issue`)", a.dir)
	}
	if err := checkName(name); err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("trust: generate a key for %s: %w", name, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: name, Organization: []string{"ambr instance"}},
		NotBefore:    notBefore,
		NotAfter:     notBefore.Add(validFor),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{InstanceURI(name)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, &key.PublicKey, a.key)
	if err != nil {
		return fmt.Errorf("trust: issue a certificate for %s: %w", name, err)
	}
	certs := filepath.Join(a.dir, "certs")
	if err := os.MkdirAll(certs, 0o700); err != nil {
		return fmt.Errorf("trust: %w", err)
	}
	if err := writeKey(filepath.Join(certs, name+".key"), key); err != nil {
		return err
	}
	return writePEM(filepath.Join(certs, name+".crt"), "CERTIFICATE", der, 0o644)
}

// Identity returns instance name's identity: its certificate from certs/,
// issued now if it is missing or expires within RenewBefore and the CA key
// is here.
func (a *Authority) Identity(name string) (*Identity, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	id, err := a.loadIdentity(name)
	if err == nil && time.Until(id.leaf.NotAfter) > RenewBefore {
		return id, nil
	}
	if a.key == nil {
		if err != nil {
			return nil, err
		}
		return id, nil // expiring, and only the operator can renew it: still valid
	}
	unlock, lerr := lockDir(a.dir)
	if lerr != nil {
		return nil, lerr
	}
	defer unlock()
	// Another process may have issued it meanwhile.
	if id, err := a.loadIdentity(name); err == nil && time.Until(id.leaf.NotAfter) > RenewBefore {
		return id, nil
	}
	if err := a.Issue(name, time.Now().Add(-time.Hour), InstanceValidity); err != nil {
		return nil, err
	}
	return a.loadIdentity(name)
}

func (a *Authority) loadIdentity(name string) (*Identity, error) { return a.loadPair(name, true) }

// loadPair loads name's certificate and key, checking them against the CA
// if verify is set.
func (a *Authority) loadPair(name string, verify bool) (*Identity, error) {
	crt := filepath.Join(a.dir, "certs", name+".crt")
	pair, err := tls.LoadX509KeyPair(crt, filepath.Join(a.dir, "certs", name+".key"))
	if err != nil {
		return nil, fmt.Errorf("trust: no certificate for instance %s in %s: %w (issue one with `ambr certs issue %s %s`)", name, a.dir, err, a.dir, name)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("trust: %s: %w", crt, err)
	}
	if got, ok := nameOf(leaf); !ok || got != name {
		return nil, fmt.Errorf("trust: %s names instance %q, not %q", crt, got, name)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: a.pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); verify && err != nil {
		return nil, fmt.Errorf("trust: %s is not valid under the CA in %s: %w", crt, a.dir, err)
	}
	pair.Leaf = leaf
	return &Identity{Name: name, pair: pair, leaf: leaf, pool: a.pool}, nil
}

// Identity is one instance's certificate and key, and the CA it trusts
// peers from.
type Identity struct {
	Name string
	pair tls.Certificate
	leaf *x509.Certificate
	pool *x509.CertPool
}

// NotAfter returns when the identity's certificate expires.
func (id *Identity) NotAfter() time.Time { return id.leaf.NotAfter }

// ServerConfig is the configuration of a coordinator's peer port: TLS 1.3
// only, a client certificate from the CA required. The caller reads the
// client's name with PeerName once the handshake is done.
func (id *Identity) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{id.pair},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    id.pool,
	}
}

// ClientConfig is the configuration for dialling instance peer: TLS 1.3,
// this identity's certificate, and the server's certificate must be from
// the CA and name peer (so a stale or forged registry entry cannot stand in
// for it). Host names play no part: identities are instance names.
func (id *Identity) ClientConfig(peer string) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{id.pair},
		// The chain and the name are checked in VerifyConnection instead
		// of against a host name.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the peer sent no certificate")
			}
			leaf := cs.PeerCertificates[0]
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: id.pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				return fmt.Errorf("the certificate of the coordinator that answered is not from the CA this coordinator trusts (the registry's own, or --tls DIR): %w", err)
			}
			got, ok := nameOf(leaf)
			if !ok || got != peer {
				return fmt.Errorf("the coordinator that answered is instance %q, not %q (a stale or forged registry entry)", got, peer)
			}
			return nil
		},
	}
}

// PeerName returns the instance name in the verified client certificate of
// a finished server-side handshake.
func PeerName(cs tls.ConnectionState) (string, error) {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return "", errors.New("no verified client certificate")
	}
	name, ok := nameOf(cs.VerifiedChains[0][0])
	if !ok {
		return "", errors.New("the client certificate names no ambr instance (URI SAN ambr://instance/NAME)")
	}
	return name, nil
}

// InstanceURI is the URI SAN that names an instance in its certificate.
func InstanceURI(name string) *url.URL {
	return &url.URL{Scheme: "ambr", Host: "instance", Path: "/" + name}
}

func nameOf(c *x509.Certificate) (string, bool) {
	for _, u := range c.URIs {
		if u.Scheme == "ambr" && u.Host == "instance" && strings.HasPrefix(u.Path, "/") && len(u.Path) > 1 {
			return u.Path[1:], true
		}
	}
	return "", false
}

func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\\\x00") {
		return fmt.Errorf("trust: %q is not an instance name", name)
	}
	return nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	return n
}

func lockDir(dir string) (func(), error) {
	l := flock.New(filepath.Join(dir, ".lock"))
	if err := l.Lock(); err != nil {
		return nil, fmt.Errorf("trust: lock %s: %w", dir, err)
	}
	return func() { _ = l.Unlock() }, nil
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("trust: %w", err)
	}
	return writePEM(path, "PRIVATE KEY", der, 0o600)
}

// writePEM replaces path atomically with one PEM block.
func writePEM(path, typ string, der []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return fmt.Errorf("trust: %w", err)
	}
	err = pem.Encode(f, &pem.Block{Type: typ, Bytes: der})
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("trust: write %s: %w", path, err)
	}
	return nil
}

func parseCert(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("not a PEM certificate")
	}
	return x509.ParseCertificate(blk.Bytes)
}

func parseKey(b []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("not a PEM key")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, errors.New("the key cannot sign")
	}
	return s, nil
}

// CertInfo describes one instance certificate of an authority.
type CertInfo struct {
	Name     string    `json:"name"`
	NotAfter time.Time `json:"not_after"`
	// Problem says why the certificate would be refused ("" if valid).
	Problem string `json:"problem,omitempty"`
}

// List describes the instance certificates under certs/, by name.
func (a *Authority) List() ([]CertInfo, error) {
	entries, err := os.ReadDir(filepath.Join(a.dir, "certs"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("trust: %w", err)
	}
	var out []CertInfo
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".crt")
		if !ok {
			continue
		}
		info := CertInfo{Name: name}
		if id, err := a.loadPair(name, false); err != nil {
			info.Problem = err.Error()
		} else {
			info.NotAfter = id.leaf.NotAfter
			if _, err := a.loadIdentity(name); err != nil {
				info.Problem = err.Error()
			}
		}
		out = append(out, info)
	}
	return out, nil
}
