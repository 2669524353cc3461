package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Registry maps instance names to the address where their coordinator
// accepts other coordinators. The default is a directory of small files
// under the home; a multi-machine deployment implements it on a coordination
// service (etcd) instead.
type Registry interface {
	// Register says that name's coordinator listens at addr now.
	Register(name, addr string) error
	// Lookup returns name's address, or an error wrapping ErrNotRegistered.
	Lookup(name string) (string, error)
	// Unregister removes name if it is still registered at addr.
	Unregister(name, addr string) error
}

// ErrNotRegistered says an instance has no address in the registry (yet).
var ErrNotRegistered = errors.New("not registered")

// FileRegistry is a Registry in a directory: one JSON file per instance,
// replaced atomically. Every instance under one home shares it, so they find
// each other wherever they run, and an instance that comes back on another
// port, or from a directory copied elsewhere with the same registry, is
// found again.
type FileRegistry struct{ Dir string }

// DefaultRegistryDir is the registry directory of a home.
func DefaultRegistryDir(home string) string { return filepath.Join(home, ".registry") }

type registryEntry struct {
	Addr    string `json:"addr"`
	PID     int    `json:"pid"`
	Updated int64  `json:"updated"`
}

// Register implements Registry.
func (r FileRegistry) Register(name, addr string) error {
	if err := os.MkdirAll(r.Dir, 0o755); err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	b, _ := json.Marshal(registryEntry{Addr: addr, PID: os.Getpid(), Updated: time.Now().UnixNano()})
	tmp := filepath.Join(r.Dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(r.Dir, name)); err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	return nil
}

// Lookup implements Registry.
func (r FileRegistry) Lookup(name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(r.Dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("registry: %s: %w", name, ErrNotRegistered)
	}
	if err != nil {
		return "", fmt.Errorf("registry: %w", err)
	}
	var e registryEntry
	if err := json.Unmarshal(b, &e); err != nil || e.Addr == "" {
		return "", fmt.Errorf("registry: %s: damaged entry", name)
	}
	return e.Addr, nil
}

// Unregister implements Registry.
func (r FileRegistry) Unregister(name, addr string) error {
	if cur, err := r.Lookup(name); err != nil || cur != addr {
		return nil
	}
	return os.Remove(filepath.Join(r.Dir, name))
}
