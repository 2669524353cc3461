// Package azurite is test support: it runs azurite, Microsoft's Azure
// Storage emulator (blobs, queues, tables), installed from the npm
// registry, for tests of code that writes to Azure Storage.
package azurite

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Version is the emulator Start installs.
const Version = "3.35.0"

// Start runs azurite on free loopback ports for the test, stops it
// (SIGKILL) when the test ends, and returns its connection string. It
// installs azurite from the npm registry into the user's cache directory
// the first time, and skips the test only when npm is not installed.
func Start(t *testing.T) string {
	t.Helper()
	bin := install(t)
	// A free port can be taken between freePorts and azurite's bind (other
	// test binaries start azurite at the same time): an emulator that
	// exits before it listens is started again on other ports.
	var ports []int
	for attempt := 1; ; attempt++ {
		ports = freePorts(t, 3)
		logs, err := run(t, bin, ports)
		if err == nil {
			break
		}
		if attempt == 3 {
			t.Fatalf("%v\n%s", err, logs)
		}
		t.Logf("%v; starting it again on other ports", err)
	}
	// The emulator's well-known development account and key.
	const account, key = "devstoreaccount1", "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
	return fmt.Sprintf("DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;BlobEndpoint=http://127.0.0.1:%d/%s;QueueEndpoint=http://127.0.0.1:%d/%s;TableEndpoint=http://127.0.0.1:%d/%s;",
		account, key, ports[0], account, ports[1], account, ports[2], account)
}

// install returns the azurite executable, installed from the npm registry
// into the user's cache directory the first time; it skips the test when
// npm is not installed.
func install(t *testing.T) string {
	t.Helper()
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Skip("npm is not installed: this test runs azurite, the Azure Storage emulator from the npm registry (install Node.js and npm to run it)")
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "ambr-test", "azurite-"+Version)
	bin := filepath.Join(dir, "node_modules", ".bin", "azurite")
	if _, err := os.Stat(bin); err != nil {
		t.Logf("installing azurite %s into %s (once) …", Version, dir)
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			t.Fatal(err)
		}
		// Into a directory of its own, then renamed: test binaries of
		// other packages may install at the same time.
		tmp, err := os.MkdirTemp(filepath.Dir(dir), "installing-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(tmp)
		out, err := exec.Command(npm, "install", "--prefix", tmp, "--no-audit", "--no-fund", "azurite@"+Version).CombinedOutput()
		if err != nil {
			t.Fatalf("npm install azurite@%s: %v\n%s", Version, err, out)
		}
		if err := os.Rename(tmp, dir); err != nil {
			if _, statErr := os.Stat(bin); statErr != nil {
				t.Fatalf("install azurite: %v", err)
			}
		}
	}
	return bin
}

// run starts azurite on ports and waits until it listens. The emulator is
// stopped when the test ends. An error says it exited first or did not
// listen in time, with its output.
func run(t *testing.T, bin string, ports []int) (string, error) {
	t.Helper()
	var logs bytes.Buffer
	cmd := exec.Command(bin, "--silent", "--inMemoryPersistence", "--skipApiVersionCheck", "--disableProductStyleUrl",
		"--blobHost", "127.0.0.1", "--blobPort", fmt.Sprint(ports[0]),
		"--queueHost", "127.0.0.1", "--queuePort", fmt.Sprint(ports[1]),
		"--tableHost", "127.0.0.1", "--tablePort", fmt.Sprint(ports[2]))
	cmd.Dir = t.TempDir()
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start azurite: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	gone := false // exited was received (found hung: the cleanup waited for it again)
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if !gone {
			<-exited
		}
	})
	for _, p := range []int{ports[0], ports[2]} {
		deadline := time.Now().Add(60 * time.Second)
		for {
			c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err == nil {
				c.Close()
				break
			}
			select {
			case err := <-exited:
				gone = true
				return logs.String(), fmt.Errorf("azurite exited: %v", err)
			default:
			}
			if time.Now().After(deadline) {
				_ = cmd.Process.Kill()
				<-exited // its output is complete
				gone = true
				return logs.String(), fmt.Errorf("azurite did not listen on port %d within 60 s", p)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return "", nil
}

// freePorts finds n free loopback TCP ports.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}
