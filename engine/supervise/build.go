package supervise

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/ambr-dev/ambr/logfmt"
)

// BinDir is where binaries are kept under the home.
func BinDir(home string) string { return filepath.Join(home, ".bin") }

// Resolve turns APP into a kept binary: an executable file is copied, a Go
// package path is built. progress gets a line for a build.
func Resolve(ctx context.Context, app, home string, progress io.Writer) (logfmt.AppBuild, error) {
	if st, err := os.Stat(app); err == nil && st.Mode().IsRegular() {
		if st.Mode()&0o111 == 0 {
			return logfmt.AppBuild{}, fmt.Errorf("%s is a file but not executable (chmod +x it, or name a Go package directory)", app)
		}
		return keep(app, app, home)
	}
	if !looksLikePackage(app) {
		return logfmt.AppBuild{}, fmt.Errorf("APP %q is neither an executable file nor a Go package path (like ./samples/accumulator)", app)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return logfmt.AppBuild{}, fmt.Errorf("building Go package %s needs the go command on PATH (or pass an executable instead)", app)
	}
	// Build outside the home: if this build is stored already, nothing is
	// written there (a home whose disk filled up can still restart).
	tmpDir, err := os.MkdirTemp("", "ambr-build-")
	if err != nil {
		return logfmt.AppBuild{}, fmt.Errorf("build %s: make a temporary directory: %w", app, err)
	}
	defer os.RemoveAll(tmpDir)
	if progress != nil {
		fmt.Fprintf(progress, "building %s …\n", app)
	}
	out, _ := filepath.Abs(filepath.Join(tmpDir, "app"))
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", out, ".")
	if st, err := os.Stat(app); err == nil && st.IsDir() {
		cmd.Dir = app // build in the package's own module
	} else {
		cmd.Args[len(cmd.Args)-1] = app
	}
	msg, err := cmd.CombinedOutput()
	if err != nil {
		return logfmt.AppBuild{}, fmt.Errorf("go build %s failed:\n%s", app, strings.TrimSpace(string(msg)))
	}
	return keep(app, out, home)
}

func looksLikePackage(app string) bool {
	if strings.HasPrefix(app, "./") || strings.HasPrefix(app, "../") || strings.HasPrefix(app, "/") {
		st, err := os.Stat(app)
		return err == nil && st.IsDir()
	}
	return strings.Contains(app, ".") && strings.Contains(app, "/") // a module path
}

// keep stores the binary at path as <home>/.bin/<sha256>, unless a file
// with that content is stored already: then nothing is written.
func keep(source, path, home string) (logfmt.AppBuild, error) {
	sum, err := fileSHA256(path)
	if err != nil {
		return logfmt.AppBuild{}, err
	}
	dst, err := filepath.Abs(filepath.Join(BinDir(home), sum))
	if err != nil {
		return logfmt.AppBuild{}, err
	}
	build := logfmt.AppBuild{Source: source, Path: dst, SHA256: sum}
	if stored, err := fileSHA256(dst); err == nil && stored == sum {
		return build, nil
	}
	if err := os.MkdirAll(BinDir(home), 0o755); err != nil {
		return logfmt.AppBuild{}, fmt.Errorf("keep the app's binary: %w", err)
	}
	// Absent, or not what its name says (damaged): store it again.
	if err := copyFile(path, dst); err != nil {
		return logfmt.AppBuild{}, fmt.Errorf("keep the app's binary in %s: %w (free some space there, or point --home elsewhere)", BinDir(home), err)
	}
	return build, nil
}

// fileSHA256 is the hex SHA-256 of the file at path.
func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// copyFile copies src to dst through a temporary file of its own, renamed
// into place: several `ambr run`s may keep the same binary at once, and none
// may exec a file another is still writing (ETXTBSY).
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.CreateTemp(filepath.Dir(dst), ".copy-*")
	if err != nil {
		return err
	}
	defer os.Remove(out.Name())
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Chmod(0o755); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(out.Name(), dst)
}
