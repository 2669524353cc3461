package vfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
)

func TestErrorOnChosenOpOnly(t *testing.T) {
	m := newInstance(t)
	fault := ErrorOn(OpSync, "log-3", syscall.EIO)
	e := NewErrorFS(m, fault)

	log3, err := e.Create("/inst/v0/log-3")
	must(t, err)
	log4, err := e.Create("/inst/v0/log-4")
	must(t, err)
	appendTo(t, log3, "rec1") // writes to log-3 are fine
	appendTo(t, log4, "rec1")
	must(t, log4.Sync()) // syncs of other files are fine

	err = log3.Sync()
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("sync log-3: %v, want EIO", err)
	}
	if got, want := err.Error(), "vfs: sync /inst/v0/log-3: input/output error"; got != want {
		t.Fatalf("error %q, want %q", got, want)
	}
	var pe *fs.PathError
	if !errors.As(err, &pe) || pe.Op != "sync" || pe.Path != "/inst/v0/log-3" || pe.Err != syscall.EIO {
		t.Fatalf("%#v is not the PathError for sync log-3", err)
	}
	// The injected Sync synced nothing.
	must(t, m.SyncDir("/inst/v0"))
	if got := content(t, m.CrashClone(crashNone), "/inst/v0/log-3"); got != "" {
		t.Fatalf("failed sync made %q durable", got)
	}
	if err := log3.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("second sync: %v, want EIO again", err)
	}
	if fault.Hits() != 2 {
		t.Fatalf("Hits %d, want 2", fault.Hits())
	}

	fault.Disable()
	must(t, log3.Sync())
	if got := content(t, m.CrashClone(crashNone), "/inst/v0/log-3"); got != "rec1" {
		t.Fatalf("after the fault cleared: %q", got)
	}
	fault.Enable()
	if err := log3.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("re-enabled: %v", err)
	}
	fault.Disable()
	must(t, log3.Close())
	must(t, log4.Close())
}

func TestErrorAfter(t *testing.T) {
	m := newInstance(t)
	fault := ErrorAfter(2, syscall.ENOSPC, OpWrite)
	e := NewErrorFS(m, fault)
	f, err := e.Create("/inst/v0/log-1")
	must(t, err)
	must(t, f.Sync()) // not a write: not counted
	appendTo(t, f, "one")
	appendTo(t, f, "two")
	n, err := f.Write([]byte("three"))
	if n != 0 || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("third write: %d, %v; want 0, ENOSPC", n, err)
	}
	if got, want := err.Error(), "vfs: write /inst/v0/log-1: no space left on device"; got != want {
		t.Fatalf("error %q, want %q", got, want)
	}
	if _, err := f.Write([]byte("four")); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("fourth write: %v", err)
	}
	// Injected writes wrote nothing.
	if got := readFile(t, m, "/inst/v0/log-1"); got != "onetwo" {
		t.Fatalf("contents %q", got)
	}
	fault.Disable()
	appendTo(t, f, "five")
	must(t, f.Close())
	if got := readFile(t, m, "/inst/v0/log-1"); got != "onetwofive" {
		t.Fatalf("contents %q", got)
	}
}

func TestErrorAfterAnyKind(t *testing.T) {
	e := NewErrorFS(NewMem(), ErrorAfter(0, syscall.EIO))
	if err := e.MkdirAll("/a", 0o755); !errors.Is(err, syscall.EIO) {
		t.Fatalf("mkdirall: %v", err)
	}
	if _, err := e.Stat("/"); !errors.Is(err, syscall.EIO) {
		t.Fatalf("stat: %v", err)
	}
}

func TestErrorOnEveryKind(t *testing.T) {
	// Each kind can be failed alone, and fails nothing else.
	kinds := []OpKind{OpCreate, OpOpen, OpOpenAppend, OpRead, OpReadAt, OpWrite, OpSync,
		OpTruncate, OpStat, OpClose, OpRemove, OpRename, OpMkdirAll, OpReadDir, OpSyncDir}
	for _, kind := range kinds {
		t.Run(kind.String(), func(t *testing.T) {
			fault := ErrorOn(kind, "", syscall.EIO)
			e := NewErrorFS(NewMem(), fault)
			var failed []OpKind
			check := func(k OpKind, err error) {
				if err != nil {
					if !errors.Is(err, syscall.EIO) {
						t.Fatalf("%v: unexpected error %v", k, err)
					}
					failed = append(failed, k)
				}
			}
			inner := e.Inner()
			if err := e.MkdirAll("/d", 0o755); err != nil {
				check(OpMkdirAll, err)
				must(t, inner.MkdirAll("/d", 0o755))
			}
			check(OpSyncDir, e.SyncDir("/"))
			f, err := e.Create("/d/f")
			check(OpCreate, err)
			if f == nil {
				f, err = inner.Create("/d/f")
				must(t, err)
				f = &errorFile{fs: e, inner: f, name: "/d/f"}
			}
			_, err = f.Write([]byte("abc"))
			check(OpWrite, err)
			check(OpSync, f.Sync())
			check(OpTruncate, f.Truncate(3))
			_, err = f.Stat()
			check(OpStat, err)
			_, err = f.ReadAt(make([]byte, 1), 0)
			check(OpReadAt, err)
			check(OpClose, f.Close())
			g, err := e.Open("/d/f")
			check(OpOpen, err)
			if g != nil {
				_, err = g.Read(make([]byte, 1))
				check(OpRead, err)
				check(OpClose, g.Close())
			}
			g, err = e.OpenAppend("/d/f")
			check(OpOpenAppend, err)
			if g != nil {
				check(OpClose, g.Close())
			}
			_, err = e.ReadDir("/d")
			check(OpReadDir, err)
			name := "/d/g"
			if err := e.Rename("/d/f", name); err != nil {
				check(OpRename, err)
				name = "/d/f"
			}
			_, err = e.Stat("/d")
			check(OpStat, err)
			check(OpRemove, e.Remove(name))

			want := map[OpKind]int{OpStat: 2, OpClose: 3}[kind] // File.Stat and FS.Stat; three files
			want = max(want, 1)
			if len(failed) != want || failed[0] != kind || failed[want-1] != kind || fault.Hits() != want {
				t.Fatalf("failed %v (hits %d), want only %v", failed, fault.Hits(), kind)
			}
		})
	}
}

func TestErrorRenameIsLinkError(t *testing.T) {
	m := newInstance(t)
	writeFile(t, m, "/inst/MANIFEST.tmp", "m")
	e := NewErrorFS(m, ErrorOn(OpRename, "MANIFEST", syscall.EIO))
	err := e.Rename("/inst/MANIFEST.tmp", "/inst/MANIFEST")
	var le *os.LinkError
	if !errors.As(err, &le) || le.Old != "/inst/MANIFEST.tmp" || le.New != "/inst/MANIFEST" || !errors.Is(err, syscall.EIO) {
		t.Fatalf("%v", err)
	}
	if got, want := err.Error(), "vfs: rename /inst/MANIFEST.tmp /inst/MANIFEST: input/output error"; got != want {
		t.Fatalf("error %q, want %q", got, want)
	}
	if _, err := m.Stat("/inst/MANIFEST"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("injected rename renamed: %v", err)
	}
}

func TestInjectorFunc(t *testing.T) {
	// Fail exactly the 3rd operation, whatever it is.
	var seen []string
	e := NewErrorFS(NewMem(), InjectorFunc(func(op Op) error {
		seen = append(seen, fmt.Sprintf("%d %v", op.Index, op))
		if op.Index == 3 {
			return &fs.PathError{Op: "custom", Path: op.Path, Err: syscall.EROFS}
		}
		return nil
	}))
	must(t, e.MkdirAll("/a", 0o755))
	f, err := e.Create("/a/f")
	must(t, err)
	_, err = f.Write([]byte("x"))
	if got, want := fmt.Sprint(err), "custom /a/f: read-only file system"; got != want {
		t.Fatalf("error %q, want %q (the injector's PathError, unwrapped)", got, want)
	}
	must(t, f.Close())
	if got := fmt.Sprint(seen); got != "[1 mkdirall /a 2 create /a/f 3 write /a/f 4 close /a/f]" {
		t.Fatalf("seen %s", got)
	}
}

func TestErrorFSOverDisk(t *testing.T) {
	dir := t.TempDir()
	fault := ErrorOn(OpSync, "log-3", syscall.EIO)
	e := NewErrorFS(Default(), fault)
	name := filepath.Join(dir, "log-3")
	f, err := e.Create(name)
	must(t, err)
	appendTo(t, f, "rec")
	if err := f.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("sync: %v", err)
	}
	fault.Disable()
	must(t, f.Sync())
	must(t, f.Close())
}

func TestInjectedCloseStillCloses(t *testing.T) {
	m := newInstance(t)
	e := NewErrorFS(m, ErrorOn(OpClose, "", syscall.EIO))
	f, err := e.Create("/inst/f")
	must(t, err)
	if err := f.Close(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("close: %v", err)
	}
	inner := f.(*errorFile).inner
	if err := inner.Close(); !errors.Is(err, fs.ErrClosed) {
		t.Fatalf("inner file still open: %v", err)
	}
}

func TestErrorFSConcurrent(t *testing.T) {
	m := newInstance(t)
	fault := ErrorOn(OpWrite, "", syscall.ENOSPC)
	fault.Disable()
	e := NewErrorFS(m, fault)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			f, err := e.Create(fmt.Sprintf("/inst/v0/log-%d", w))
			if err != nil {
				t.Error(err)
				return
			}
			defer f.Close()
			for range 100 {
				if _, err := f.Write([]byte("r")); err != nil && !errors.Is(err, syscall.ENOSPC) {
					t.Error(err)
				}
				if err := f.Sync(); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Go(func() {
		for range 100 {
			fault.Enable()
			fault.Disable()
		}
	})
	wg.Wait()
	// Every write either failed (counted as a hit) or wrote one byte.
	total := 0
	for w := range 8 {
		fi, err := m.Stat(fmt.Sprintf("/inst/v0/log-%d", w))
		must(t, err)
		total += int(fi.Size())
	}
	if total+fault.Hits() != 800 {
		t.Fatalf("%d bytes written + %d failed writes != 800", total, fault.Hits())
	}
}
