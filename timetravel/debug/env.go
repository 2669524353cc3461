package debug

import (
	"fmt"
	"os"
	"strings"
	"sync"
)

// envMu serialises launches that change the process environment.
var envMu sync.Mutex

// checkEnv reports an entry of env that is not KEY=VALUE.
func checkEnv(env []string) error {
	for _, kv := range env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return fmt.Errorf("environment entry %q is not KEY=VALUE", kv)
		}
	}
	return nil
}

// withEnv runs launch with env added to the process environment, and puts
// the environment back afterwards. Delve starts the target with the
// debugger's own environment and has no way to pass another one, so this
// is how the target gets env; other goroutines of this process that read
// the environment meanwhile see env too.
func withEnv(env []string, launch func() error) error {
	if len(env) == 0 {
		return launch()
	}
	envMu.Lock()
	defer envMu.Unlock()
	type saved struct {
		key, value string
		had        bool
	}
	restore := make([]saved, 0, len(env))
	defer func() {
		for i := len(restore) - 1; i >= 0; i-- {
			if r := restore[i]; r.had {
				os.Setenv(r.key, r.value)
			} else {
				os.Unsetenv(r.key)
			}
		}
	}()
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		old, had := os.LookupEnv(k)
		restore = append(restore, saved{k, old, had})
		if err := os.Setenv(k, v); err != nil {
			return fmt.Errorf("set environment %s: %w", k, err)
		}
	}
	return launch()
}
