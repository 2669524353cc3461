package debug

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
)

// DebugGCFlags are the compiler flags of a debug build: no optimisation and
// no inlining in every package, so that every variable and argument can be
// read and every line can hold a breakpoint.
const DebugGCFlags = "all=-N -l"

// BuildDebug builds the Go main package in directory pkgDir into outPath with
// debug information and without optimisations (-gcflags=all=-N -l), using
// the go command found in PATH. On failure the error carries the output of
// the go command.
func BuildDebug(ctx context.Context, pkgDir, outPath string) error {
	gotool, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("debug: build %s: go command not found: %w", pkgDir, err)
	}
	out, err := filepath.Abs(outPath)
	if err != nil {
		return fmt.Errorf("debug: build %s: %w", pkgDir, err)
	}
	cmd := exec.CommandContext(ctx, gotool, "build", "-gcflags="+DebugGCFlags, "-o", out, ".")
	cmd.Dir = pkgDir
	var output bytes.Buffer
	cmd.Stdout = &output
	cmd.Stderr = &output
	if err := cmd.Run(); err != nil {
		if msg := strings.TrimSpace(output.String()); msg != "" {
			return fmt.Errorf("debug: build %s: %w\n%s", pkgDir, err, msg)
		}
		return fmt.Errorf("debug: build %s: %w", pkgDir, err)
	}
	return nil
}
