package etcdreg

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ambr-dev/ambr/engine"
	"github.com/ambr-dev/ambr/internal/etcdtest"
)

// eventually waits for f to hold, failing after a generous deadline.
func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after 20 s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRegistryOnEtcd(t *testing.T) {
	srv := etcdtest.Start(t)
	eps, err := ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	a, err := Open(eps)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open(eps)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	if _, err := b.Lookup("server"); !errors.Is(err, engine.ErrNotRegistered) {
		t.Fatalf("lookup before any registration: %v", err)
	}
	if err := a.Register("server", "127.0.0.1:1111"); err != nil {
		t.Fatal(err)
	}
	// b learns it through its watch.
	eventually(t, "b sees the registration", func() bool { addr, err := b.Lookup("server"); return err == nil && addr == "127.0.0.1:1111" })
	// Moved: a new address replaces the old one everywhere.
	if err := a.Register("server", "127.0.0.1:2222"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b sees the move", func() bool { addr, _ := b.Lookup("server"); return addr == "127.0.0.1:2222" })
	// A stale unregister (the old address) removes nothing.
	if err := b.Unregister("server", "127.0.0.1:1111"); err != nil {
		t.Fatal(err)
	}
	if addr, err := a.Lookup("server"); err != nil || addr != "127.0.0.1:2222" {
		t.Fatalf("after a stale unregister: %q, %v", addr, err)
	}
	list, err := b.List(t.Context())
	if err != nil || len(list) != 1 || list[0].Name != "server" || list[0].Addr != "127.0.0.1:2222" {
		t.Fatalf("list: %+v, %v", list, err)
	}

	// etcd restarts: the registration and the watch come back.
	srv.Restart()
	eventually(t, "register once etcd is back", func() bool { return a.Register("client", "127.0.0.1:3333") == nil })
	eventually(t, "b sees a registration after etcd restarted", func() bool { addr, _ := b.Lookup("client"); return addr == "127.0.0.1:3333" })
	if addr, err := b.Lookup("server"); err != nil || addr != "127.0.0.1:2222" {
		t.Fatalf("server after etcd restarted: %q, %v", addr, err)
	}

	if err := a.Unregister("server", "127.0.0.1:2222"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b sees the unregistration", func() bool { _, err := b.Lookup("server"); return errors.Is(err, engine.ErrNotRegistered) })
}

func TestUnreachableEtcd(t *testing.T) {
	_, err := Open([]string{"http://127.0.0.1:1"})
	if err == nil || !strings.Contains(err.Error(), "does not answer") {
		t.Fatalf("etcd that is not there: %v", err)
	}
}

func TestParseURL(t *testing.T) {
	eps, err := ParseURL("etcd://a:1,b:2")
	if err != nil || len(eps) != 2 || eps[0] != "http://a:1" || eps[1] != "http://b:2" {
		t.Fatalf("%v, %v", eps, err)
	}
	for _, bad := range []string{"etcd://", "http://a:1", "etcd://a", "etcd://a:1/x"} {
		if _, err := ParseURL(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
