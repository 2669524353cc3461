package vfs

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var (
	crashNone = CrashOptions{}
	crashAll  = CrashOptions{KeepUnsynced: KeepAll, KeepUnsyncedDirs: KeepAll}
)

func crashRandom(seed uint64) CrashOptions {
	return CrashOptions{KeepUnsynced: KeepRandom, KeepUnsyncedDirs: KeepRandom, Rand: rand.New(rand.NewPCG(seed, 0))}
}

// newInstance returns a MemFS with a durable /inst/v0.
func newInstance(t *testing.T) *MemFS {
	m := NewMem()
	must(t, m.MkdirAll("/inst/v0", 0o755))
	must(t, m.SyncDir("/"))
	must(t, m.SyncDir("/inst"))
	must(t, m.SyncDir("/inst/v0"))
	return m
}

// content returns the contents of name, or "<absent>".
func content(t *testing.T, m *MemFS, name string) string {
	t.Helper()
	if _, err := m.Stat(name); errors.Is(err, fs.ErrNotExist) {
		return "<absent>"
	}
	return readFile(t, m, name)
}

func appendTo(t *testing.T, f File, s string) {
	t.Helper()
	if _, err := f.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
}

func TestCrashUnsyncedData(t *testing.T) {
	m := newInstance(t)
	f, err := m.Create("/inst/v0/log-1")
	must(t, err)
	appendTo(t, f, "abc")
	must(t, f.Sync())
	must(t, m.SyncDir("/inst/v0"))
	appendTo(t, f, "de")
	appendTo(t, f, "f")

	if got := content(t, m.CrashClone(crashNone), "/inst/v0/log-1"); got != "abc" {
		t.Errorf("KeepNone: got %q, want %q", got, "abc")
	}
	if got := content(t, m.CrashClone(crashAll), "/inst/v0/log-1"); got != "abcdef" {
		t.Errorf("KeepAll: got %q, want %q", got, "abcdef")
	}
	seen := map[string]int{}
	for seed := range uint64(200) {
		got := content(t, m.CrashClone(crashRandom(seed)), "/inst/v0/log-1")
		if !strings.HasPrefix("abcdef", got) || len(got) < 3 {
			t.Fatalf("KeepRandom seed %d: %q is not abc plus a prefix of def", seed, got)
		}
		seen[got]++
	}
	if len(seen) != 4 {
		t.Errorf("KeepRandom over 200 seeds kept %v; want all of abc, abcd, abcde, abcdef", seen)
	}

	// The original is untouched by cloning, and still writable.
	appendTo(t, f, "g")
	must(t, f.Sync())
	must(t, f.Close())
	if got := content(t, m.CrashClone(crashNone), "/inst/v0/log-1"); got != "abcdefg" {
		t.Errorf("after sync: got %q", got)
	}
}

func TestCrashNeverSyncedFileIsEmpty(t *testing.T) {
	m := newInstance(t)
	f, err := m.Create("/inst/v0/log-1")
	must(t, err)
	appendTo(t, f, "abc")
	must(t, m.SyncDir("/inst/v0"))
	if got := content(t, m.CrashClone(crashNone), "/inst/v0/log-1"); got != "" {
		t.Errorf("got %q, want the entry with no data", got)
	}
}

func TestCrashDirEntries(t *testing.T) {
	m := newInstance(t)
	writeFile(t, m, "/inst/v0/chkpt-1", "synced, dir not synced")

	if got := content(t, m.CrashClone(crashNone), "/inst/v0/chkpt-1"); got != "<absent>" {
		t.Errorf("created and synced, dir not synced, KeepNone: got %q, want it gone", got)
	}
	if got := content(t, m.CrashClone(crashAll), "/inst/v0/chkpt-1"); got != "synced, dir not synced" {
		t.Errorf("KeepAll: got %q", got)
	}
	seen := map[string]bool{}
	for seed := range uint64(50) {
		seen[content(t, m.CrashClone(crashRandom(seed)), "/inst/v0/chkpt-1")] = true
	}
	if len(seen) != 2 {
		t.Errorf("KeepRandom over 50 seeds: %v; want both absent and present", seen)
	}

	must(t, m.SyncDir("/inst/v0"))
	if got := content(t, m.CrashClone(crashNone), "/inst/v0/chkpt-1"); got != "synced, dir not synced" {
		t.Errorf("synced and dir synced: got %q", got)
	}

	// Remove is durable only after SyncDir too.
	must(t, m.Remove("/inst/v0/chkpt-1"))
	if got := content(t, m.CrashClone(crashNone), "/inst/v0/chkpt-1"); got != "synced, dir not synced" {
		t.Errorf("removed, dir not synced: got %q, want it back", got)
	}
	if got := content(t, m.CrashClone(crashAll), "/inst/v0/chkpt-1"); got != "<absent>" {
		t.Errorf("removed, KeepAll: got %q", got)
	}
	must(t, m.SyncDir("/inst/v0"))
	if got := content(t, m.CrashClone(crashNone), "/inst/v0/chkpt-1"); got != "<absent>" {
		t.Errorf("removed, dir synced: got %q", got)
	}
}

func TestCrashMkdirAllNeedsParentSync(t *testing.T) {
	m := NewMem()
	must(t, m.MkdirAll("/inst/v0", 0o755))
	writeFile(t, m, "/inst/v0/log-1", "x")
	must(t, m.SyncDir("/inst/v0"))
	c := m.CrashClone(crashNone)
	if _, err := c.Stat("/inst"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("/inst survived without SyncDir(/): %v\n%s", err, c)
	}
	must(t, m.SyncDir("/"))
	c = m.CrashClone(crashNone)
	if _, err := c.Stat("/inst/v0"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("/inst/v0 survived without SyncDir(/inst): %v", err)
	}
	must(t, m.SyncDir("/inst"))
	if got := content(t, m.CrashClone(crashNone), "/inst/v0/log-1"); got != "x" {
		t.Fatalf("got %q", got)
	}
}

// replaceManifest is the coordinator's atomic MANIFEST replacement.
func replaceManifest(t *testing.T, fsys FS, data string) {
	t.Helper()
	writeFile(t, fsys, "/inst/MANIFEST.tmp", data) // create, write, sync, close
	must(t, fsys.Rename("/inst/MANIFEST.tmp", "/inst/MANIFEST"))
	must(t, fsys.SyncDir("/inst"))
}

func TestCrashRename(t *testing.T) {
	m := newInstance(t)
	replaceManifest(t, m, "manifest-1")

	writeFile(t, m, "/inst/MANIFEST.tmp", "manifest-2")
	must(t, m.Rename("/inst/MANIFEST.tmp", "/inst/MANIFEST"))

	// Rename not dir-synced: reverts.
	c := m.CrashClone(crashNone)
	if got := content(t, c, "/inst/MANIFEST"); got != "manifest-1" {
		t.Errorf("KeepNone: MANIFEST %q, want manifest-1", got)
	}
	if got := content(t, c, "/inst/MANIFEST.tmp"); got != "<absent>" {
		t.Errorf("KeepNone: MANIFEST.tmp %q, want absent (never dir-synced)", got)
	}
	c = m.CrashClone(crashAll)
	if got, tmp := content(t, c, "/inst/MANIFEST"), content(t, c, "/inst/MANIFEST.tmp"); got != "manifest-2" || tmp != "<absent>" {
		t.Errorf("KeepAll: MANIFEST %q, MANIFEST.tmp %q", got, tmp)
	}
	seen := map[string]bool{}
	for seed := range uint64(50) {
		got := content(t, m.CrashClone(crashRandom(seed)), "/inst/MANIFEST")
		if got != "manifest-1" && got != "manifest-2" {
			t.Fatalf("seed %d: MANIFEST %q", seed, got)
		}
		seen[got] = true
	}
	if len(seen) != 2 {
		t.Errorf("KeepRandom: saw only %v", seen)
	}

	must(t, m.SyncDir("/inst"))
	c = m.CrashClone(crashNone)
	if got := content(t, c, "/inst/MANIFEST"); got != "manifest-2" {
		t.Errorf("after SyncDir: MANIFEST %q", got)
	}
	names, err := c.ReadDir("/inst")
	must(t, err)
	if diff := cmp.Diff([]string{"MANIFEST", "v0"}, names); diff != "" {
		t.Errorf("after SyncDir (-want +got):\n%s", diff)
	}
}

func TestCrashTruncate(t *testing.T) {
	m := newInstance(t)
	writeFile(t, m, "/inst/v0/log-3", "ABCDEF")
	must(t, m.SyncDir("/inst/v0"))
	f, err := m.OpenAppend("/inst/v0/log-3")
	must(t, err)
	must(t, f.Truncate(3))
	appendTo(t, f, "XY")

	if got := content(t, m.CrashClone(crashNone), "/inst/v0/log-3"); got != "ABCDEF" {
		t.Errorf("KeepNone: %q", got)
	}
	if got := content(t, m.CrashClone(crashAll), "/inst/v0/log-3"); got != "ABCXY" {
		t.Errorf("KeepAll: %q", got)
	}
	allowed := map[string]bool{"ABCDEF": true, "ABC": true, "ABCX": true, "ABCXY": true}
	seen := map[string]bool{}
	for seed := range uint64(200) {
		got := content(t, m.CrashClone(crashRandom(seed)), "/inst/v0/log-3")
		if !allowed[got] {
			t.Fatalf("seed %d: %q", seed, got)
		}
		seen[got] = true
	}
	if len(seen) != len(allowed) {
		t.Errorf("KeepRandom saw %v, want all of %v", seen, allowed)
	}

	must(t, f.Sync())
	if got := content(t, m.CrashClone(crashNone), "/inst/v0/log-3"); got != "ABCXY" {
		t.Errorf("after Sync: %q", got)
	}
	must(t, f.Close())
	// The synced bytes were shared with the data: later writes must not
	// have changed what the clone was given or what is synced.
	if got := content(t, m.CrashClone(crashNone), "/inst/v0/log-3"); got != "ABCXY" {
		t.Errorf("after Close: %q", got)
	}
}

func TestCrashCreateOverExisting(t *testing.T) {
	m := newInstance(t)
	writeFile(t, m, "/inst/v0/chkpt-1", "old state")
	must(t, m.SyncDir("/inst/v0"))
	f, err := m.Create("/inst/v0/chkpt-1")
	must(t, err)
	appendTo(t, f, "new")
	if got := content(t, m.CrashClone(crashNone), "/inst/v0/chkpt-1"); got != "old state" {
		t.Errorf("KeepNone: %q", got)
	}
	if got := content(t, m.CrashClone(crashAll), "/inst/v0/chkpt-1"); got != "new" {
		t.Errorf("KeepAll: %q", got)
	}
	must(t, f.Close())
}

func TestCrashOverwriteAllOrNothing(t *testing.T) {
	m := newInstance(t)
	f, err := m.Create("/inst/v0/f")
	must(t, err)
	appendTo(t, f, "ab")
	must(t, f.Sync())
	must(t, m.SyncDir("/inst/v0"))
	must(t, f.Truncate(4)) // "ab\0\0", offset still 2
	appendTo(t, f, "cd")   // overwrites the zeros
	if got := content(t, m.CrashClone(crashAll), "/inst/v0/f"); got != "abcd" {
		t.Fatalf("KeepAll: %q", got)
	}
	for seed := range uint64(20) {
		if got := content(t, m.CrashClone(crashRandom(seed)), "/inst/v0/f"); got != "ab" && got != "abcd" {
			t.Fatalf("seed %d: %q", seed, got)
		}
	}
	must(t, f.Close())
}

// TestCrashOverwriteScattered: a file extended by Truncate and written
// inside, crashed with KeepScattered, has its synced size or its new one,
// and each 512-byte sector its old bytes (zeros past the synced size) or
// its new ones; over many crashes every combination of two sectors and
// both sizes turns up.
func TestCrashOverwriteScattered(t *testing.T) {
	m := newInstance(t)
	f, err := m.Create("/inst/v0/f")
	must(t, err)
	head := strings.Repeat("h", 300)
	appendTo(t, f, head)
	must(t, f.Sync())
	must(t, m.SyncDir("/inst/v0"))
	must(t, f.Truncate(2048)) // preallocated ahead; offset still 300
	body := strings.Repeat("x", 400)
	appendTo(t, f, body) // bytes 300..700: sector 0 (300..512) and sector 1 (512..700)
	seen := map[string]bool{}
	for seed := range uint64(400) {
		got := content(t, m.CrashClone(CrashOptions{KeepUnsynced: KeepScattered, Rand: rand.New(rand.NewPCG(seed, 1))}), "/inst/v0/f")
		if len(got) != 300 && len(got) != 2048 {
			t.Fatalf("seed %d: size %d, want 300 or 2048", seed, len(got))
		}
		if got[:300] != head {
			t.Fatalf("seed %d: synced bytes changed", seed)
		}
		if len(got) == 300 {
			seen["short"] = true
			continue
		}
		s0, s1 := got[300:512], got[512:700]
		switch {
		case s0 == body[:212]:
		case s0 == strings.Repeat("\x00", 212):
		default:
			t.Fatalf("seed %d: sector 0 is neither old nor new: %q", seed, s0)
		}
		switch {
		case s1 == body[212:]:
		case s1 == strings.Repeat("\x00", 188):
		default:
			t.Fatalf("seed %d: sector 1 is neither old nor new: %q", seed, s1)
		}
		if rest := got[700:]; rest != strings.Repeat("\x00", len(rest)) {
			t.Fatalf("seed %d: bytes past the writes are not zeros", seed)
		}
		seen[fmt.Sprintf("%v%v", s0[0] == 'x', s1[0] == 'x')] = true
	}
	for _, k := range []string{"short", "truetrue", "truefalse", "falsetrue", "falsefalse"} {
		if !seen[k] {
			t.Errorf("no crash left %s (saw %v)", k, seen)
		}
	}
	must(t, f.Close())
}

func TestCrashCloneIsIndependent(t *testing.T) {
	m := newInstance(t)
	writeFile(t, m, "/inst/v0/log-1", "abc")
	must(t, m.SyncDir("/inst/v0"))
	c := m.CrashClone(crashNone)
	if c.OpCount() != 0 {
		t.Errorf("clone OpCount %d", c.OpCount())
	}

	f, err := c.OpenAppend("/inst/v0/log-1")
	must(t, err)
	appendTo(t, f, "from clone")
	must(t, f.Close())
	if got := content(t, m, "/inst/v0/log-1"); got != "abc" {
		t.Errorf("original changed by the clone: %q", got)
	}
	// Everything in a clone is durable.
	if got := content(t, c.CrashClone(crashNone), "/inst/v0/log-1"); got != "abc" {
		t.Errorf("clone of clone: %q", got)
	}
	if diff := cmp.Diff("/inst/\n/inst/v0/\n/inst/v0/log-1 13 bytes, 3 synced\n", c.String()); diff != "" {
		t.Errorf("clone String (-want +got):\n%s", diff)
	}
}

func TestCrashRandomIsReproducible(t *testing.T) {
	m := newInstance(t)
	for i := range 10 {
		f, err := m.Create(fmt.Sprintf("/inst/v0/log-%d", i))
		must(t, err)
		appendTo(t, f, "synced")
		must(t, f.Sync())
		appendTo(t, f, strings.Repeat("u", 20))
		must(t, f.Close())
		if i%2 == 0 {
			must(t, m.SyncDir("/inst/v0"))
		}
	}
	a, b := m.CrashClone(crashRandom(7)).String(), m.CrashClone(crashRandom(7)).String()
	if a != b {
		t.Fatalf("same seed, different crashes:\n%s\n%s", a, b)
	}
}

func TestString(t *testing.T) {
	m := newInstance(t)
	writeFile(t, m, "/inst/v0/log-1", "abc")
	f, err := m.OpenAppend("/inst/v0/log-1")
	must(t, err)
	appendTo(t, f, "de")
	must(t, f.Close())
	want := "/inst/\n/inst/v0/\n/inst/v0/log-1 5 bytes, 3 synced (entry not durable)\n"
	if diff := cmp.Diff(want, m.String()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestCrashRandomNeedsRand(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	NewMem().CrashClone(CrashOptions{KeepUnsynced: KeepRandom})
}

func TestHook(t *testing.T) {
	m := NewMem()
	var ops []string
	m.SetHook(func(op Op) {
		if op.Index != len(ops)+1 {
			t.Errorf("op %v has index %d, want %d", op, op.Index, len(ops)+1)
		}
		if m.OpCount() != op.Index {
			t.Errorf("in hook for %v: OpCount %d", op, m.OpCount())
		}
		ops = append(ops, op.String())
	})
	must(t, m.MkdirAll("/inst", 0o755))
	must(t, m.SyncDir("/"))
	f, err := m.Create("/inst/MANIFEST.tmp")
	must(t, err)
	appendTo(t, f, "m1")
	must(t, f.Sync())
	must(t, f.Close())
	must(t, m.Rename("/inst/MANIFEST.tmp", "/inst/MANIFEST"))
	must(t, m.SyncDir("/inst"))
	// Reads and failed operations are not counted.
	_ = readFile(t, m, "/inst/MANIFEST") // open, read, close: only close counts
	if _, err := m.ReadDir("/inst"); err != nil {
		t.Fatal(err)
	}
	if err := m.Remove("/inst/nope"); err == nil {
		t.Fatal("removed a missing file")
	}
	f, err = m.OpenAppend("/inst/MANIFEST")
	must(t, err)
	must(t, f.Truncate(1))
	must(t, f.Close())
	must(t, m.Remove("/inst/MANIFEST"))

	want := []string{
		"mkdirall /inst",
		"syncdir /",
		"create /inst/MANIFEST.tmp",
		"write /inst/MANIFEST.tmp",
		"sync /inst/MANIFEST.tmp",
		"close /inst/MANIFEST.tmp",
		"rename /inst/MANIFEST.tmp /inst/MANIFEST",
		"syncdir /inst",
		"close /inst/MANIFEST",
		"truncate /inst/MANIFEST",
		"close /inst/MANIFEST",
		"remove /inst/MANIFEST",
	}
	if diff := cmp.Diff(want, ops); diff != "" {
		t.Errorf("ops (-want +got):\n%s", diff)
	}
	if m.OpCount() != len(want) {
		t.Errorf("OpCount %d, want %d", m.OpCount(), len(want))
	}
	m.SetHook(nil)
	must(t, m.SyncDir("/"))
	if len(ops) != len(want) {
		t.Errorf("hook called after SetHook(nil)")
	}
}

// TestCrashAtEveryOp is the pattern crash tests use: clone after every
// operation and check what recovery would find.
func TestCrashAtEveryOp(t *testing.T) {
	m := newInstance(t)
	replaceManifest(t, m, "manifest-1")

	crashes := 0
	m.SetHook(func(op Op) {
		for _, opts := range []CrashOptions{crashNone, crashAll, crashRandom(uint64(op.Index))} {
			c := m.CrashClone(opts)
			crashes++
			got := content(t, c, "/inst/MANIFEST")
			if got != "manifest-1" && got != "manifest-2" {
				t.Errorf("crash after op %d (%v): MANIFEST is %q", op.Index, op, got)
			}
		}
	})
	replaceManifest(t, m, "manifest-2")
	m.SetHook(nil)
	if crashes != 3*6 {
		t.Errorf("%d crashes, want 18 (6 ops)", crashes)
	}
	if got := content(t, m.CrashClone(crashNone), "/inst/MANIFEST"); got != "manifest-2" {
		t.Errorf("at the end: %q", got)
	}
}

func TestMemConcurrent(t *testing.T) {
	m := newInstance(t)
	base := m.OpCount()
	var hooked sync.Map
	m.SetHook(func(op Op) {
		if _, dup := hooked.LoadOrStore(op.Index, true); dup {
			t.Errorf("index %d seen twice", op.Index)
		}
	})
	var wg sync.WaitGroup
	const workers, rounds = 8, 50
	for w := range workers {
		wg.Go(func() {
			name := fmt.Sprintf("/inst/v0/log-%d", w)
			f, err := m.Create(name)
			if err != nil {
				t.Error(err)
				return
			}
			for i := range rounds {
				if _, err := f.Write([]byte("record")); err != nil {
					t.Error(err)
				}
				if i%5 == 0 {
					if err := f.Sync(); err != nil {
						t.Error(err)
					}
					if err := m.SyncDir("/inst/v0"); err != nil {
						t.Error(err)
					}
				}
				buf := make([]byte, 6)
				if _, err := f.ReadAt(buf, 0); err != nil || string(buf) != "record" {
					t.Errorf("readat: %q, %v", buf, err)
				}
			}
			if err := f.Close(); err != nil {
				t.Error(err)
			}
			if err := m.Rename(name, name+".done"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Go(func() {
		for i := range 100 {
			c := m.CrashClone(crashRandom(uint64(i)))
			if _, err := c.ReadDir("/inst/v0"); err != nil {
				t.Error(err)
			}
			if _, err := m.ReadDir("/inst/v0"); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()

	names, err := m.ReadDir("/inst/v0")
	must(t, err)
	if len(names) != workers {
		t.Fatalf("names %v", names)
	}
	for _, n := range names {
		fi, err := m.Stat("/inst/v0/" + n)
		must(t, err)
		if fi.Size() != 6*rounds {
			t.Errorf("%s: size %d", n, fi.Size())
		}
	}
	want := workers * (1 + rounds + 2*rounds/5 + 2)
	if m.OpCount() != base+want {
		t.Errorf("OpCount %d, want %d", m.OpCount(), want)
	}
	count := 0
	hooked.Range(func(k, v any) bool { count++; return true })
	if count != want {
		t.Errorf("hook saw %d ops, want %d", count, want)
	}
}

func TestMemPaths(t *testing.T) {
	m := NewMem()
	must(t, m.MkdirAll("inst//v0/../v0/", 0o755)) // relative names start at "/"
	writeFile(t, m, "/inst/./v0/log-1", "x")
	if got := content(t, m, "inst/v0/log-1"); got != "x" {
		t.Fatalf("got %q", got)
	}
	names, err := m.ReadDir("/")
	must(t, err)
	if diff := cmp.Diff([]string{"inst"}, names); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	fi, err := m.Stat("/")
	must(t, err)
	if !fi.IsDir() || fi.Mode()&fs.ModeDir == 0 || !fi.ModTime().IsZero() || fi.Sys() != nil {
		t.Fatalf("stat /: %v %v %v", fi.IsDir(), fi.Mode(), fi.ModTime())
	}
	if err := m.Remove("/"); err == nil {
		t.Fatal("removed /")
	}
	if _, err := m.Create(""); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("create empty name: %v", err)
	}
	if err := m.Rename("/inst", "/inst/v0/inside"); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("rename into itself: %v", err)
	}
	if err := m.Rename("/inst/v0", "/inst/v0/log-1"); !errors.Is(err, syscall.ENOTDIR) {
		t.Fatalf("rename dir over file: %v", err)
	}
}
