package vfs

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// implementations returns each FS under test with an existing directory to
// work in.
func implementations(t *testing.T) map[string]func(t *testing.T) (FS, string) {
	return map[string]func(t *testing.T) (FS, string){
		"disk": func(t *testing.T) (FS, string) { return Default(), t.TempDir() },
		"mem": func(t *testing.T) (FS, string) {
			m := NewMem()
			must(t, m.MkdirAll("/data", 0o755))
			return m, "/data"
		},
		"errorfs(mem)": func(t *testing.T) (FS, string) {
			m := NewMem()
			must(t, m.MkdirAll("/data", 0o755))
			return NewErrorFS(m, ErrorOn(OpSync, "never-matches", syscall.EIO)), "/data"
		},
		"errorfs(disk)": func(t *testing.T) (FS, string) {
			return NewErrorFS(Default(), nil), t.TempDir()
		},
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, fsys FS, name, data string) {
	t.Helper()
	f, err := fsys.Create(name)
	must(t, err)
	if n, err := f.Write([]byte(data)); err != nil || n != len(data) {
		t.Fatalf("write %s: %d, %v", name, n, err)
	}
	must(t, f.Sync())
	must(t, f.Close())
}

func readFile(t *testing.T, fsys FS, name string) string {
	t.Helper()
	f, err := fsys.Open(name)
	must(t, err)
	defer f.Close()
	b, err := io.ReadAll(f)
	must(t, err)
	return string(b)
}

func wantErrIs(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("got error %v, want one that Is %v", err, target)
	}
	if !strings.HasPrefix(err.Error(), "vfs: ") {
		t.Fatalf("error %q lacks the vfs: prefix", err)
	}
}

var behaviour = []struct {
	name string
	run  func(t *testing.T, fsys FS, dir string)
}{
	{"create write read", func(t *testing.T, fsys FS, dir string) {
		name := filepath.Join(dir, "log-1")
		f, err := fsys.Create(name)
		must(t, err)
		for _, s := range []string{"hello ", "world"} {
			if n, err := f.Write([]byte(s)); err != nil || n != len(s) {
				t.Fatalf("write: %d, %v", n, err)
			}
		}
		// The offset is at the end: Read sees nothing more.
		if n, err := f.Read(make([]byte, 4)); n != 0 || err != io.EOF {
			t.Fatalf("read at end: %d, %v; want 0, io.EOF", n, err)
		}
		buf := make([]byte, 5)
		if n, err := f.ReadAt(buf, 6); n != 5 || err != nil || string(buf) != "world" {
			t.Fatalf("readat: %d, %v, %q", n, err, buf)
		}
		if n, err := f.ReadAt(buf, 8); n != 3 || err != io.EOF || string(buf[:n]) != "rld" {
			t.Fatalf("readat past end: %d, %v, %q; want 3, io.EOF", n, err, buf[:n])
		}
		fi, err := f.Stat()
		must(t, err)
		if fi.Size() != 11 || fi.Name() != "log-1" || fi.IsDir() {
			t.Fatalf("stat: size %d name %q dir %v", fi.Size(), fi.Name(), fi.IsDir())
		}
		must(t, f.Sync())
		must(t, f.Close())
		if got := readFile(t, fsys, name); got != "hello world" {
			t.Fatalf("read back %q", got)
		}
	}},
	{"create truncates", func(t *testing.T, fsys FS, dir string) {
		name := filepath.Join(dir, "MANIFEST.tmp")
		writeFile(t, fsys, name, "a long old manifest")
		writeFile(t, fsys, name, "new")
		if got := readFile(t, fsys, name); got != "new" {
			t.Fatalf("got %q, want %q", got, "new")
		}
	}},
	{"open is read-only", func(t *testing.T, fsys FS, dir string) {
		name := filepath.Join(dir, "chkpt-1")
		writeFile(t, fsys, name, "state")
		f, err := fsys.Open(name)
		must(t, err)
		defer f.Close()
		if _, err := f.Write([]byte("x")); err == nil {
			t.Fatal("write to a file opened read-only succeeded")
		}
		if err := f.Truncate(0); err == nil {
			t.Fatal("truncate of a file opened read-only succeeded")
		}
		if got := readFile(t, fsys, name); got != "state" {
			t.Fatalf("got %q", got)
		}
	}},
	{"open append", func(t *testing.T, fsys FS, dir string) {
		name := filepath.Join(dir, "log-3")
		writeFile(t, fsys, name, "rec1rec2torn")
		f, err := fsys.OpenAppend(name)
		must(t, err)
		// Recovery: read, cut the torn tail, sync, keep appending.
		b, err := io.ReadAll(f)
		must(t, err)
		if string(b) != "rec1rec2torn" {
			t.Fatalf("read %q", b)
		}
		must(t, f.Truncate(8))
		must(t, f.Sync())
		_, err = f.Write([]byte("rec3"))
		must(t, err)
		must(t, f.Close())
		if got := readFile(t, fsys, name); got != "rec1rec2rec3" {
			t.Fatalf("got %q", got)
		}
	}},
	{"truncate extends with zeros", func(t *testing.T, fsys FS, dir string) {
		name := filepath.Join(dir, "f")
		f, err := fsys.Create(name)
		must(t, err)
		_, err = f.Write([]byte("ab"))
		must(t, err)
		must(t, f.Truncate(4))
		must(t, f.Close())
		if got := readFile(t, fsys, name); got != "ab\x00\x00" {
			t.Fatalf("got %q", got)
		}
	}},
	{"missing files", func(t *testing.T, fsys FS, dir string) {
		name := filepath.Join(dir, "nope")
		_, err := fsys.Open(name)
		wantErrIs(t, err, fs.ErrNotExist)
		if !strings.Contains(err.Error(), name) {
			t.Fatalf("error %q does not name %s", err, name)
		}
		_, err = fsys.OpenAppend(name)
		wantErrIs(t, err, fs.ErrNotExist)
		_, err = fsys.Stat(name)
		wantErrIs(t, err, fs.ErrNotExist)
		wantErrIs(t, fsys.Remove(name), fs.ErrNotExist)
		wantErrIs(t, fsys.Rename(name, name+"2"), fs.ErrNotExist)
		_, err = fsys.ReadDir(name)
		wantErrIs(t, err, fs.ErrNotExist)
		wantErrIs(t, fsys.SyncDir(name), fs.ErrNotExist)
		_, err = fsys.Create(filepath.Join(dir, "nodir", "f"))
		wantErrIs(t, err, fs.ErrNotExist)
	}},
	{"rename replaces", func(t *testing.T, fsys FS, dir string) {
		tmp, final := filepath.Join(dir, "MANIFEST.tmp"), filepath.Join(dir, "MANIFEST")
		writeFile(t, fsys, final, "old")
		writeFile(t, fsys, tmp, "new")
		must(t, fsys.Rename(tmp, final))
		must(t, fsys.SyncDir(dir))
		if got := readFile(t, fsys, final); got != "new" {
			t.Fatalf("got %q", got)
		}
		_, err := fsys.Stat(tmp)
		wantErrIs(t, err, fs.ErrNotExist)
	}},
	{"rename onto a directory fails", func(t *testing.T, fsys FS, dir string) {
		f, d := filepath.Join(dir, "f"), filepath.Join(dir, "d")
		writeFile(t, fsys, f, "x")
		must(t, fsys.MkdirAll(d, 0o755))
		err := fsys.Rename(f, d)
		wantErrIs(t, err, fs.ErrExist)
		var le *os.LinkError
		if !errors.As(err, &le) || le.Old != f || le.New != d {
			t.Fatalf("error %v is not a LinkError naming both paths", err)
		}
	}},
	{"rename directory", func(t *testing.T, fsys FS, dir string) {
		must(t, fsys.MkdirAll(filepath.Join(dir, "v0"), 0o755))
		writeFile(t, fsys, filepath.Join(dir, "v0", "log-1"), "x")
		must(t, fsys.Rename(filepath.Join(dir, "v0"), filepath.Join(dir, "v1")))
		if got := readFile(t, fsys, filepath.Join(dir, "v1", "log-1")); got != "x" {
			t.Fatalf("got %q", got)
		}
	}},
	{"remove", func(t *testing.T, fsys FS, dir string) {
		sub := filepath.Join(dir, "v0")
		must(t, fsys.MkdirAll(sub, 0o755))
		name := filepath.Join(sub, "log-3.broken")
		writeFile(t, fsys, name, "x")
		if err := fsys.Remove(sub); err == nil {
			t.Fatal("removed a non-empty directory")
		} else {
			wantErrIs(t, err, syscall.ENOTEMPTY)
		}
		must(t, fsys.Remove(name))
		must(t, fsys.Remove(sub))
		names, err := fsys.ReadDir(dir)
		must(t, err)
		if len(names) != 0 {
			t.Fatalf("left %v", names)
		}
	}},
	{"mkdirall and readdir", func(t *testing.T, fsys FS, dir string) {
		v0 := filepath.Join(dir, "inst", "v0")
		must(t, fsys.MkdirAll(v0, 0o755))
		must(t, fsys.MkdirAll(v0, 0o755)) // exists: fine
		for _, n := range []string{"log-2", "chkpt-1", "log-10", "log-1"} {
			writeFile(t, fsys, filepath.Join(v0, n), n)
		}
		must(t, fsys.MkdirAll(filepath.Join(v0, "sub"), 0o755))
		names, err := fsys.ReadDir(v0)
		must(t, err)
		want := []string{"chkpt-1", "log-1", "log-10", "log-2", "sub"}
		if diff := cmp.Diff(want, names); diff != "" {
			t.Fatalf("readdir (-want +got):\n%s", diff)
		}
		fi, err := fsys.Stat(v0)
		must(t, err)
		if !fi.IsDir() || fi.Name() != "v0" {
			t.Fatalf("stat dir: %v %q", fi.IsDir(), fi.Name())
		}
		fi, err = fsys.Stat(filepath.Join(v0, "log-10"))
		must(t, err)
		if fi.IsDir() || fi.Size() != 6 {
			t.Fatalf("stat file: dir %v size %d", fi.IsDir(), fi.Size())
		}
		must(t, fsys.SyncDir(v0))
	}},
	{"files are not directories", func(t *testing.T, fsys FS, dir string) {
		name := filepath.Join(dir, "f")
		writeFile(t, fsys, name, "x")
		wantErrIs(t, fsys.MkdirAll(filepath.Join(name, "sub"), 0o755), syscall.ENOTDIR)
		_, err := fsys.ReadDir(name)
		wantErrIs(t, err, syscall.ENOTDIR)
		wantErrIs(t, fsys.SyncDir(name), syscall.ENOTDIR)
		_, err = fsys.Open(filepath.Join(name, "x"))
		wantErrIs(t, err, syscall.ENOTDIR)
	}},
	{"directories are not files", func(t *testing.T, fsys FS, dir string) {
		_, err := fsys.Open(dir)
		wantErrIs(t, err, syscall.EISDIR)
		_, err = fsys.OpenAppend(dir)
		wantErrIs(t, err, syscall.EISDIR)
		_, err = fsys.Create(dir)
		wantErrIs(t, err, syscall.EISDIR)
	}},
	{"closed file", func(t *testing.T, fsys FS, dir string) {
		f, err := fsys.Create(filepath.Join(dir, "f"))
		must(t, err)
		must(t, f.Close())
		wantErrIs(t, f.Close(), fs.ErrClosed)
		_, err = f.Write([]byte("x"))
		wantErrIs(t, err, fs.ErrClosed)
		_, err = f.Read(make([]byte, 1))
		wantErrIs(t, err, fs.ErrClosed)
		wantErrIs(t, f.Sync(), fs.ErrClosed)
		wantErrIs(t, f.Truncate(0), fs.ErrClosed)
		_, err = f.Stat()
		wantErrIs(t, err, fs.ErrClosed)
	}},
	{"open file survives remove", func(t *testing.T, fsys FS, dir string) {
		name := filepath.Join(dir, "f")
		writeFile(t, fsys, name, "data")
		f, err := fsys.Open(name)
		must(t, err)
		defer f.Close()
		must(t, fsys.Remove(name))
		b, err := io.ReadAll(f)
		must(t, err)
		if string(b) != "data" {
			t.Fatalf("got %q", b)
		}
	}},
}

func TestBehaviour(t *testing.T) {
	for implName, setup := range implementations(t) {
		t.Run(implName, func(t *testing.T) {
			for _, tc := range behaviour {
				t.Run(tc.name, func(t *testing.T) {
					fsys, dir := setup(t)
					tc.run(t, fsys, dir)
				})
			}
		})
	}
}

func TestErrorMessage(t *testing.T) {
	m := NewMem()
	_, err := m.Open("/x/log-3")
	if got, want := err.Error(), "vfs: open /x/log-3: no such file or directory"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	var pe *fs.PathError
	if !errors.As(err, &pe) || pe.Op != "open" || pe.Path != "/x/log-3" {
		t.Fatalf("%v is not a PathError for open /x/log-3", err)
	}

	dir := t.TempDir()
	_, err = Default().Open(filepath.Join(dir, "log-3"))
	if got, want := err.Error(), "vfs: open "+filepath.Join(dir, "log-3")+": no such file or directory"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// TestWriteVec: a vectored write of more buffers than one writev takes,
// empty ones among them, leaves the file holding their concatenation, on
// every implementation (the disk's writev and the fallback).
func TestWriteVec(t *testing.T) {
	for name, mk := range implementations(t) {
		t.Run(name, func(t *testing.T) {
			fsys, dir := mk(t)
			f, err := fsys.Create(filepath.Join(dir, "v"))
			must(t, err)
			var bufs [][]byte
			var want []byte
			for i := 0; i < 3000; i++ {
				b := []byte(strings.Repeat(string(rune('a'+i%26)), i%7))
				bufs = append(bufs, b)
				want = append(want, b...)
			}
			n, err := WriteVec(f, bufs)
			must(t, err)
			if n != int64(len(want)) {
				t.Fatalf("wrote %d bytes, want %d", n, len(want))
			}
			got := make([]byte, len(want)+1)
			m, err := f.ReadAt(got, 0)
			if err != io.EOF {
				t.Fatalf("read back: %v", err)
			}
			if string(got[:m]) != string(want) {
				t.Fatalf("file holds %d bytes that differ from the %d written", m, len(want))
			}
			must(t, f.Close())
		})
	}
}
