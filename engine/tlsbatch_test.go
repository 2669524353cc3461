package engine

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// countingConn counts the writes made to it.
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

func selfSignedTLS(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"}, DNSNames: []string{"test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestGatheredTLSWritesOnce: a batch written through gatheredTLS arrives
// whole and in order, each buffer of up to maxGathered bytes in one write
// of the connection under it (a tls.Conn alone makes one per 16 KiB
// record), a larger one record by record.
func TestGatheredTLSWritesOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cert := selfSignedTLS(t)
	var got bytes.Buffer
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		s := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
		_, err = io.Copy(&got, s)
		done <- err
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cc := &countingConn{Conn: raw}
	tc := newGatheredTLSClient(cc, &tls.Config{InsecureSkipVerify: true, ServerName: "test"})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	// Past the record size boost, so that records are full size.
	if _, err := tc.Write(make([]byte, 200<<10)); err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	want.Write(make([]byte, 200<<10))
	mk := func(n int, b byte) []byte { return bytes.Repeat([]byte{b}, n) }
	batch := [][]byte{mk(frameChunkSize, 1), mk(100, 2), mk(frameChunkSize, 3)}
	before := cc.writes.Load()
	if err := tc.writeBatch(batch); err != nil {
		t.Fatal(err)
	}
	if n := cc.writes.Load() - before; n != 3 {
		t.Errorf("a batch of 3 buffers took %d writes, want 3", n)
	}
	giant := mk(4*frameChunkSize, 4)
	before = cc.writes.Load()
	if err := tc.writeBatch([][]byte{giant}); err != nil {
		t.Fatal(err)
	}
	if n := cc.writes.Load() - before; n < 4*frameChunkSize/(16<<10) {
		t.Errorf("a giant buffer took %d writes: it was gathered", n)
	}
	for _, b := range append(batch, giant) {
		want.Write(b)
	}
	tc.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("received %d bytes, want %d, or different ones", got.Len(), want.Len())
	}
}
