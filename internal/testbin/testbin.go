// Package testbin builds Go commands for tests that run them as processes:
// each package once per test binary, into one temporary directory, which
// the test binary's TestMain removes with Clean.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var (
	mu    sync.Mutex
	dir   string
	built = map[string]string{}
	errs  = map[string]error{}
)

// Build returns the path of the command built from the package at pkgDir
// (a path relative to the test's package, as go build takes it), building
// it on first use. A failed build fails the test, every time it is asked
// for.
func Build(t testing.TB, pkgDir string) string {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if bin, ok := built[pkgDir]; ok {
		return bin
	}
	if err, ok := errs[pkgDir]; ok {
		t.Fatal(err)
	}
	if dir == "" {
		d, err := os.MkdirTemp("", "ambr-testbin-")
		if err != nil {
			t.Fatal(err)
		}
		dir = d
	}
	bin := filepath.Join(dir, fmt.Sprintf("%d-%s", len(built), filepath.Base(pkgDir)))
	if out, err := exec.Command("go", "build", "-o", bin, pkgDir).CombinedOutput(); err != nil {
		errs[pkgDir] = fmt.Errorf("go build %s: %v\n%s", pkgDir, err, out)
		t.Fatal(errs[pkgDir])
	}
	built[pkgDir] = bin
	return bin
}

// Clean removes everything Build made.
func Clean() {
	mu.Lock()
	defer mu.Unlock()
	if dir != "" {
		os.RemoveAll(dir)
	}
	dir, built, errs = "", map[string]string{}, map[string]error{}
}
