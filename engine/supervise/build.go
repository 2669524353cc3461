package supervise

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
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
		return keep(app, app, home, false)
	}
	if !looksLikePackage(app) {
		return logfmt.AppBuild{}, fmt.Errorf("APP %q is neither an executable file nor a Go package path (like ./samples/accumulator)", app)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return logfmt.AppBuild{}, fmt.Errorf("building Go package %s needs the go command on PATH (or pass an executable instead)", app)
	}
	if err := os.MkdirAll(BinDir(home), 0o755); err != nil {
		return logfmt.AppBuild{}, err
	}
	tmp, err := os.CreateTemp(BinDir(home), "build-*")
	if err != nil {
		return logfmt.AppBuild{}, err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	if progress != nil {
		fmt.Fprintf(progress, "building %s …\n", app)
	}
	out, _ := filepath.Abs(tmp.Name())
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
	return keep(app, tmp.Name(), home, true)
}

func looksLikePackage(app string) bool {
	if strings.HasPrefix(app, "./") || strings.HasPrefix(app, "../") || strings.HasPrefix(app, "/") {
		st, err := os.Stat(app)
		return err == nil && st.IsDir()
	}
	return strings.Contains(app, ".") && strings.Contains(app, "/") // a module path
}

// keep copies (or moves) the binary at path to <home>/.bin/<sha256>.
func keep(source, path, home string, move bool) (logfmt.AppBuild, error) {
	f, err := os.Open(path)
	if err != nil {
		return logfmt.AppBuild{}, err
	}
	h := sha256.New()
	_, err = io.Copy(h, f)
	f.Close()
	if err != nil {
		return logfmt.AppBuild{}, fmt.Errorf("hash %s: %w", path, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if err := os.MkdirAll(BinDir(home), 0o755); err != nil {
		return logfmt.AppBuild{}, err
	}
	dst, err := filepath.Abs(filepath.Join(BinDir(home), sum))
	if err != nil {
		return logfmt.AppBuild{}, err
	}
	if _, err := os.Stat(dst); errors.Is(err, os.ErrNotExist) {
		if move {
			err = os.Rename(path, dst)
		} else {
			err = copyFile(path, dst)
		}
		if err != nil {
			return logfmt.AppBuild{}, fmt.Errorf("keep binary: %w", err)
		}
	}
	return logfmt.AppBuild{Source: source, Path: dst, SHA256: sum}, nil
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
