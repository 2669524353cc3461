// Package etcdtest starts a real etcd server inside a test process, through
// etcd's own embed package: free loopback ports, a temporary data directory,
// no fsync (speed; a test's etcd need not survive a power cut).
package etcdtest

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// Server is an embedded etcd.
type Server struct {
	t      testing.TB
	dir    string
	client url.URL
	peer   url.URL
	etcd   *embed.Etcd
}

// Start runs an etcd for t on loopback; it stops at the end of the test.
func Start(t testing.TB) *Server { return StartOn(t, "127.0.0.1") }

// StartOn runs an etcd for t whose clients reach it at host (an address of
// this machine, e.g. a test network's bridge).
func StartOn(t testing.TB, host string) *Server {
	t.Helper()
	s := &Server{t: t, dir: filepath.Join(t.TempDir(), "etcd"), client: freeURL(t, host), peer: freeURL(t, "127.0.0.1")}
	s.start()
	t.Cleanup(s.Stop)
	return s
}

func freeURL(t testing.TB, host string) url.URL {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return url.URL{Scheme: "http", Host: addr}
}

func (s *Server) start() {
	s.t.Helper()
	cfg := embed.NewConfig()
	cfg.Name = "ambr-test"
	cfg.Dir = s.dir
	cfg.ListenClientUrls = []url.URL{s.client}
	cfg.AdvertiseClientUrls = []url.URL{s.client}
	cfg.ListenPeerUrls = []url.URL{s.peer}
	cfg.AdvertisePeerUrls = []url.URL{s.peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.UnsafeNoFsync = true
	// A one-member cluster elects itself: short ticks make starts and
	// restarts quick.
	cfg.TickMs, cfg.ElectionMs = 10, 100
	cfg.LogLevel = "error"
	cfg.LogOutputs = []string{filepath.Join(filepath.Dir(s.dir), "etcd.log")}
	if _, err := os.Stat(s.dir); err == nil {
		cfg.ClusterState = embed.ClusterStateFlagExisting
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		s.t.Fatalf("start etcd: %v", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		e.Close()
		s.t.Fatal("etcd did not become ready in 30 s")
	}
	s.etcd = e
}

// Endpoint returns the client address, HOST:PORT.
func (s *Server) Endpoint() string { return s.client.Host }

// URL returns the registry URL ambr takes: etcd://HOST:PORT.
func (s *Server) URL() string { return fmt.Sprintf("etcd://%s", s.client.Host) }

// Stop stops the server (its data stays for Restart).
func (s *Server) Stop() {
	if s.etcd != nil {
		s.etcd.Close()
		s.etcd = nil
	}
}

// Restart starts the stopped server again on the same ports and data.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}
