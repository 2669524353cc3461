package trust

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// handshake runs a TLS handshake between a client and a server over a
// loopback connection and returns the server's view of the client's name and
// both sides' errors.
func handshake(t *testing.T, client, server *tls.Config) (string, error, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	defer b.Close()
	_ = a.SetDeadline(time.Now().Add(10 * time.Second))
	_ = b.SetDeadline(time.Now().Add(10 * time.Second))
	var wg sync.WaitGroup
	var name string
	var serr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		s := tls.Server(b, server)
		if serr = s.Handshake(); serr == nil {
			name, serr = PeerName(s.ConnectionState())
		}
		s.Close()
	}()
	c := tls.Client(a, client)
	cerr := c.Handshake()
	c.Close()
	a.Close()
	wg.Wait()
	return name, cerr, serr
}

func TestLocalHandshake(t *testing.T) {
	reg := t.TempDir()
	ca, err := Local(reg)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Local(reg)
	if err != nil {
		t.Fatal(err)
	}
	if !again.cert.Equal(ca.cert) {
		t.Fatal("a second Local made another CA")
	}
	client, err := ca.Identity("client")
	if err != nil {
		t.Fatal(err)
	}
	server, err := again.Identity("server")
	if err != nil {
		t.Fatal(err)
	}
	name, cerr, serr := handshake(t, client.ClientConfig("server"), server.ServerConfig())
	if cerr != nil || serr != nil || name != "client" {
		t.Fatalf("good pair: name %q, client %v, server %v", name, cerr, serr)
	}
	for _, f := range []string{"ca.key", "certs/client.key"} {
		st, err := os.Stat(filepath.Join(reg, LocalDirName, f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v, mode %v; want 0600", f, err, st.Mode().Perm())
		}
	}
}

func TestRefusals(t *testing.T) {
	ca, err := Local(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	other, err := Init(t.TempDir(), "someone else's CA")
	if err != nil {
		t.Fatal(err)
	}
	server, _ := ca.Identity("server")
	client, _ := ca.Identity("client")
	mallory, _ := other.Identity("client")
	// An expired certificate, issued by the right CA.
	if err := ca.Issue("stale", time.Now().Add(-48*time.Hour), 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	stale, err := ca.loadPair("stale", false)
	if err != nil {
		t.Fatal(err)
	}
	noCert := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}

	for _, tc := range []struct {
		name           string
		client, server *tls.Config
		want           string // in the client's or the server's error
	}{
		{"unknown CA", mallory.ClientConfig("server"), server.ServerConfig(), "certificate"},
		{"no certificate", noCert, server.ServerConfig(), "certificate"},
		{"expired", stale.ClientConfig("server"), server.ServerConfig(), "expired"},
		{"server is not the peer dialled", client.ClientConfig("billing"), server.ServerConfig(), `instance "server", not "billing"`},
		{"server from another CA", client.ClientConfig("server"), mallory.ServerConfig(), "not from the CA this coordinator trusts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name, cerr, serr := handshake(t, tc.client, tc.server)
			if cerr == nil && serr == nil {
				t.Fatalf("handshake succeeded (client name %q)", name)
			}
			msg := ""
			if cerr != nil {
				msg += cerr.Error()
			}
			if serr != nil {
				msg += " | " + serr.Error()
			}
			if !strings.Contains(msg, tc.want) {
				t.Fatalf("errors %q do not say %q", msg, tc.want)
			}
		})
	}
}

func TestIdentityRenewsAndRefuses(t *testing.T) {
	ca, err := Local(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Issue("soon", time.Now().Add(-time.Hour), 2*time.Hour); err != nil {
		t.Fatal(err)
	}
	id, err := ca.Identity("soon")
	if err != nil {
		t.Fatal(err)
	}
	if time.Until(id.NotAfter()) < RenewBefore {
		t.Fatalf("an expiring certificate was not renewed: expires %v", id.NotAfter())
	}
	if _, err := ca.Identity("../x"); err == nil {
		t.Fatal("a path as instance name was accepted")
	}
	if _, err := Init(ca.Dir(), "again"); err == nil {
		t.Fatal("Init over an existing CA succeeded")
	}
	// Without the CA key, a missing certificate is an error that says how
	// to get one.
	if err := os.Remove(filepath.Join(ca.Dir(), "ca.key")); err != nil {
		t.Fatal(err)
	}
	ro, err := Open(ca.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ro.Identity("newcomer"); err == nil || !strings.Contains(err.Error(), "ambr certs issue") {
		t.Fatalf("missing certificate without a CA key: %v", err)
	}
}
