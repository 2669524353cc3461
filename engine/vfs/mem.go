package vfs

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The errnos a MemFS returns, as the operating system would.
var (
	errNotExist = syscall.ENOENT
	errExist    = syscall.EEXIST
	errNotDir   = syscall.ENOTDIR
	errIsDir    = syscall.EISDIR
	errNotEmpty = syscall.ENOTEMPTY
	errInvalid  = syscall.EINVAL
	errBadFd    = syscall.EBADF
	errBusy     = syscall.EBUSY
)

// MemFS is an in-memory FS that knows what a crash would keep. It is safe for
// concurrent use.
//
// Paths are cleaned and resolved from "/", which always exists and is
// durable. Errors carry the errno the operating system would give
// (syscall.ENOENT, EEXIST, ENOTDIR, EISDIR, ENOTEMPTY...). Modification times
// are always the zero time, so that tests are deterministic.
//
// MemFS numbers the mutating operations (Create, Write, Sync, Truncate,
// Close, Remove, Rename, MkdirAll, SyncDir) that succeed; a failed operation
// changes nothing and is not counted. See OpCount, SetHook and CrashClone,
// and the package documentation for the crash model.
type MemFS struct {
	// opMu serializes the mutating operations together with the hook call
	// that follows each one, so the hook sees the state right after its op.
	opMu sync.Mutex

	mu   sync.Mutex // guards everything below, all nodes and all open files
	root *memNode
	ops  int
	hook func(Op)
}

var _ FS = (*MemFS)(nil)

// NewMem returns an empty MemFS holding only the root directory "/".
func NewMem() *MemFS {
	return &MemFS{root: newMemDir(0o755)}
}

// memNode is a file or a directory. Several directory entries may point at
// one node: an entry's durable version and its current version, across a
// rename not yet made durable.
type memNode struct {
	dir  bool
	perm fs.FileMode

	// Directory state.
	children map[string]*memNode // the current entries
	durable  map[string]*memNode // the entries as of the last SyncDir

	// File state.
	data   []byte // the current contents
	synced []byte // the contents as of the last Sync
	// shared: synced aliases data's backing array (capped at len(synced)),
	// so bytes below len(synced) must be copied before being written.
	shared bool
	// cut: data[:cut] == synced[:cut], and no operation since the last Sync
	// has touched those bytes. Since then the file has only been cut down
	// to cut (by Truncate or Create) and appended to, unless overwritten.
	cut int
	// overwritten: since the last Sync a write landed inside the file's
	// existing contents (through this package's File, which writes at its
	// offset, only after Truncate extended a file ahead of it).
	overwritten bool
}

func newMemDir(perm fs.FileMode) *memNode {
	return &memNode{
		dir:      true,
		perm:     perm & fs.ModePerm,
		children: map[string]*memNode{},
		durable:  map[string]*memNode{},
	}
}

// writeAt writes p at off, zero-filling any gap past the end.
func (n *memNode) writeAt(p []byte, off int) {
	end := off + len(p)
	if n.shared && min(off, len(n.data)) < len(n.synced) {
		// About to write bytes that synced shares: copy-on-write.
		n.data = slices.Grow(bytes.Clone(n.data), max(0, end-len(n.data)))
		n.shared = false
	}
	if off < len(n.data) && len(p) > 0 {
		n.overwritten = true
		n.cut = min(n.cut, off)
	}
	if end > len(n.data) {
		n.data = append(n.data, make([]byte, end-len(n.data))...)
	}
	copy(n.data[off:], p)
}

func (n *memNode) truncate(size int) {
	if size <= len(n.data) {
		n.data = n.data[:size]
		n.cut = min(n.cut, size)
		return
	}
	n.writeAt(nil, size) // zero-fill, an append
}

func (n *memNode) sync() {
	n.synced = n.data[:len(n.data):len(n.data)]
	n.shared = true
	n.cut = len(n.data)
	n.overwritten = false
}

func (n *memNode) info(name string) os.FileInfo {
	fi := memFileInfo{name: name, mode: n.perm}
	if n.dir {
		fi.mode |= fs.ModeDir
	} else {
		fi.size = int64(len(n.data))
	}
	return fi
}

type memFileInfo struct {
	name string
	size int64
	mode fs.FileMode
}

func (fi memFileInfo) Name() string       { return fi.name }
func (fi memFileInfo) Size() int64        { return fi.size }
func (fi memFileInfo) Mode() fs.FileMode  { return fi.mode }
func (fi memFileInfo) ModTime() time.Time { return time.Time{} }
func (fi memFileInfo) IsDir() bool        { return fi.mode.IsDir() }
func (fi memFileInfo) Sys() any           { return nil }

// clean makes name absolute and clean; "" stays "" (it never exists).
func clean(name string) string {
	if name == "" {
		return ""
	}
	return path.Clean("/" + name)
}

// lookup returns the node at the cleaned path p. Called with m.mu held.
func (m *MemFS) lookup(p string) (*memNode, error) {
	if p == "" {
		return nil, errNotExist
	}
	n := m.root
	for _, elem := range strings.Split(p, "/")[1:] {
		if elem == "" {
			continue // p == "/"
		}
		if !n.dir {
			return nil, errNotDir
		}
		c, ok := n.children[elem]
		if !ok {
			return nil, errNotExist
		}
		n = c
	}
	return n, nil
}

// lookupParent returns the directory that holds the entry p and the
// entry's name. Called with m.mu held.
func (m *MemFS) lookupParent(p string) (*memNode, string, error) {
	if p == "" {
		return nil, "", errNotExist
	}
	if p == "/" {
		return nil, "", errBusy
	}
	dir, base := path.Split(p)
	d, err := m.lookup(path.Clean(dir))
	if err != nil {
		return nil, "", err
	}
	if !d.dir {
		return nil, "", errNotDir
	}
	return d, base, nil
}

// mutate runs fn, a mutating operation, under the locks; if it succeeds it
// numbers the operation and calls the hook.
func (m *MemFS) mutate(kind OpKind, p, newPath string, fn func() error) error {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	m.mu.Lock()
	if err := fn(); err != nil {
		m.mu.Unlock()
		return err
	}
	m.ops++
	op := Op{Kind: kind, Path: p, NewPath: newPath, Index: m.ops}
	hook := m.hook
	m.mu.Unlock()
	if hook != nil {
		hook(op)
	}
	return nil
}

// OpCount returns the number of mutating operations done so far.
func (m *MemFS) OpCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ops
}

// SetHook sets a function called after every mutating operation that
// succeeds, with the operation; nil removes it. While the hook runs no other
// mutating operation can start, so the state it sees (through CrashClone,
// Stat, ReadDir, Open and Read) is exactly the state right after op. The
// hook must not itself mutate this MemFS (it would deadlock); it may do
// anything with a clone.
func (m *MemFS) SetHook(hook func(op Op)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.hook = hook
}

func (m *MemFS) Create(name string) (File, error) {
	p := clean(name)
	var f *memFile
	err := m.mutate(OpCreate, p, "", func() error {
		d, base, err := m.lookupParent(p)
		if err == errBusy {
			err = errIsDir
		}
		if err != nil {
			return err
		}
		n, ok := d.children[base]
		switch {
		case ok && n.dir:
			return errIsDir
		case ok:
			n.truncate(0)
		default:
			n = &memNode{perm: 0o644}
			d.children[base] = n
		}
		f = &memFile{fs: m, node: n, name: p, write: true}
		return nil
	})
	if err != nil {
		return nil, pathError("create", p, err)
	}
	return f, nil
}

func (m *MemFS) openFile(op, name string, write bool) (File, error) {
	p := clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.lookup(p)
	if err == nil && n.dir {
		err = errIsDir
	}
	if err != nil {
		return nil, pathError(op, p, err)
	}
	return &memFile{fs: m, node: n, name: p, write: write, append: write}, nil
}

func (m *MemFS) Open(name string) (File, error) {
	return m.openFile("open", name, false)
}

func (m *MemFS) OpenAppend(name string) (File, error) {
	return m.openFile("open-append", name, true)
}

func (m *MemFS) Remove(name string) error {
	p := clean(name)
	err := m.mutate(OpRemove, p, "", func() error {
		d, base, err := m.lookupParent(p)
		if err != nil {
			return err
		}
		n, ok := d.children[base]
		if !ok {
			return errNotExist
		}
		if n.dir && len(n.children) > 0 {
			return errNotEmpty
		}
		delete(d.children, base)
		return nil
	})
	if err != nil {
		return pathError("remove", p, err)
	}
	return nil
}

func (m *MemFS) Rename(oldname, newname string) error {
	op, np := clean(oldname), clean(newname)
	err := m.mutate(OpRename, op, np, func() error {
		od, obase, err := m.lookupParent(op)
		if err != nil {
			return err
		}
		n, ok := od.children[obase]
		if !ok {
			return errNotExist
		}
		nd, nbase, err := m.lookupParent(np)
		if err != nil {
			return err
		}
		if old, ok := nd.children[nbase]; ok {
			switch {
			case old.dir:
				return errExist // as os.Rename does
			case n.dir:
				return errNotDir
			}
		}
		if n.dir && strings.HasPrefix(np+"/", op+"/") {
			return errInvalid // into itself
		}
		delete(od.children, obase)
		nd.children[nbase] = n
		return nil
	})
	if err != nil {
		return linkError("rename", op, np, err)
	}
	return nil
}

func (m *MemFS) MkdirAll(dir string, perm os.FileMode) error {
	p := clean(dir)
	err := m.mutate(OpMkdirAll, p, "", func() error {
		if p == "" {
			return errNotExist
		}
		n := m.root
		for _, elem := range strings.Split(p, "/")[1:] {
			if elem == "" {
				continue
			}
			c, ok := n.children[elem]
			if !ok {
				c = newMemDir(perm)
				n.children[elem] = c
			}
			if !c.dir {
				return errNotDir
			}
			n = c
		}
		return nil
	})
	if err != nil {
		return pathError("mkdirall", p, err)
	}
	return nil
}

func (m *MemFS) ReadDir(dir string) ([]string, error) {
	p := clean(dir)
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.lookup(p)
	if err == nil && !n.dir {
		err = errNotDir
	}
	if err != nil {
		return nil, pathError("readdir", p, err)
	}
	return slices.Sorted(maps.Keys(n.children)), nil
}

func (m *MemFS) Stat(name string) (os.FileInfo, error) {
	p := clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.lookup(p)
	if err != nil {
		return nil, pathError("stat", p, err)
	}
	return n.info(path.Base(p)), nil
}

func (m *MemFS) SyncDir(dir string) error {
	p := clean(dir)
	err := m.mutate(OpSyncDir, p, "", func() error {
		n, err := m.lookup(p)
		if err == nil && !n.dir {
			err = errNotDir
		}
		if err != nil {
			return err
		}
		n.durable = maps.Clone(n.children)
		return nil
	})
	if err != nil {
		return pathError("syncdir", p, err)
	}
	return nil
}

// Keep says what a crash keeps of something not yet made durable.
type Keep int

const (
	// KeepNone loses everything not made durable: the pessimistic crash.
	KeepNone Keep = iota
	// KeepAll keeps everything, as if the crash came after a sync of
	// everything: the optimistic crash.
	KeepAll
	// KeepRandom keeps some of it, chosen with CrashOptions.Rand.
	KeepRandom
	// KeepScattered, for file data, keeps a random prefix of the appended
	// tail of which each 512-byte sector survives or reads as zeros at
	// random: the pages of unsynced writes reach the disk in any order.
	// For a file written inside its existing bytes (after Truncate extended
	// it), each changed sector keeps its new or its old bytes at random,
	// and the size its synced or its current value. For directories it is
	// KeepRandom.
	KeepScattered
)

// scatterSector is the unit KeepScattered keeps or loses.
const scatterSector = 512

// CrashOptions says what a crash keeps beyond the durable state. The zero
// value keeps nothing.
type CrashOptions struct {
	// KeepUnsynced is for file data written since the file's last Sync.
	// KeepRandom keeps a random prefix of the appended data.
	KeepUnsynced Keep
	// KeepUnsyncedDirs is for directory entries created, renamed or removed
	// since their directory's last SyncDir. KeepRandom chooses for each
	// such entry, independently, whether the change survived.
	KeepUnsyncedDirs Keep
	// Rand makes the random choices; it must be set if either field is
	// KeepRandom. Choices are made in a fixed order (directories depth
	// first, entries by name), so a seeded Rand gives a reproducible crash.
	Rand *rand.Rand
}

// CrashClone returns a new, independent MemFS holding what the disk would
// hold after a crash right now: the durable state, plus what opts keeps of
// the rest. Everything in the clone is durable; it has no open files, no
// hook, and its OpCount starts at 0. It may be called from a hook.
func (m *MemFS) CrashClone(opts CrashOptions) *MemFS {
	if opts.KeepUnsyncedDirs == KeepScattered {
		opts.KeepUnsyncedDirs = KeepRandom
	}
	if opts.Rand == nil && (opts.KeepUnsynced == KeepRandom || opts.KeepUnsynced == KeepScattered || opts.KeepUnsyncedDirs == KeepRandom) {
		panic("vfs: CrashClone with KeepRandom needs CrashOptions.Rand")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return &MemFS{root: crashDir(m.root, &opts)}
}

func crashDir(d *memNode, opts *CrashOptions) *memNode {
	out := newMemDir(d.perm)
	names := slices.Sorted(maps.Keys(d.children))
	for name := range d.durable {
		if _, ok := d.children[name]; !ok {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		n := d.durable[name]
		if cur := d.children[name]; cur != n {
			switch opts.KeepUnsyncedDirs {
			case KeepAll:
				n = cur
			case KeepRandom:
				if opts.Rand.IntN(2) == 1 {
					n = cur
				}
			}
		}
		switch {
		case n == nil:
			// The entry does not exist after the crash.
		case n.dir:
			out.children[name] = crashDir(n, opts)
		default:
			out.children[name] = crashFile(n, opts)
		}
	}
	out.durable = maps.Clone(out.children)
	return out
}

func crashFile(f *memNode, opts *CrashOptions) *memNode {
	var b []byte
	switch opts.KeepUnsynced {
	case KeepNone:
		b = f.synced
	case KeepAll:
		b = f.data
	case KeepRandom, KeepScattered:
		r := opts.Rand
		switch {
		case f.overwritten && opts.KeepUnsynced == KeepScattered:
			b = scatterOverwrites(f, r)
		case f.overwritten:
			// No prefix model for overwrites: all or nothing.
			b = f.synced
			if r.IntN(2) == 1 {
				b = f.data
			}
		case f.cut == len(f.synced) && opts.KeepUnsynced == KeepScattered:
			// Appends only: synced plus a prefix of the tail, sectors lost.
			b = bytes.Clone(f.data[:f.cut+r.IntN(len(f.data)-f.cut+1)])
			for s := f.cut / scatterSector * scatterSector; s < len(b); s += scatterSector {
				if r.IntN(2) == 0 {
					clear(b[max(s, f.cut):min(s+scatterSector, len(b))])
				}
			}
		case f.cut == len(f.synced):
			// Appends only: synced plus a prefix of the tail.
			b = f.data[:f.cut+r.IntN(len(f.data)-f.cut+1)]
		default:
			// Cut down to f.cut, then appended to: either the cut
			// and some of the appends happened, or nothing did.
			k := r.IntN(len(f.data) - f.cut + 2)
			b = f.synced
			if k > 0 {
				b = f.data[:f.cut+k-1]
			}
		}
	}
	out := &memNode{perm: f.perm, data: bytes.Clone(b)}
	out.sync()
	return out
}

// scatterOverwrites is KeepScattered for a file written inside its existing
// bytes since its last Sync (as a log segment is after Truncate extends it
// ahead of its writes): the size is one metadata update, so the file has
// its synced size or its current one; each 512-byte sector that changed
// holds its new bytes or its old ones (zeros past the synced size), at
// random, whatever the order of the writes.
func scatterOverwrites(f *memNode, r *rand.Rand) []byte {
	size := len(f.synced)
	if r.IntN(2) == 1 {
		size = len(f.data)
	}
	b := make([]byte, size)
	copy(b, f.synced)
	for s := 0; s < size && s < len(f.data); s += scatterSector {
		e := min(s+scatterSector, size, len(f.data))
		old := b[s:e]
		if !bytes.Equal(old, f.data[s:e]) && r.IntN(2) == 1 {
			copy(old, f.data[s:e])
		}
	}
	return b
}

// String lists the files and directories, one per line, depth first and
// sorted: directories end in "/", files show their size and, when it
// differs, how much of it is synced; entries whose directory has not been
// synced since they changed are marked "(entry not durable)". Entries
// removed but not yet durably are not listed. For test failures and traces.
func (m *MemFS) String() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var b strings.Builder
	var walk func(dir string, d *memNode)
	walk = func(dir string, d *memNode) {
		for _, name := range slices.Sorted(maps.Keys(d.children)) {
			n := d.children[name]
			p := dir + name
			if n.dir {
				p += "/"
			}
			b.WriteString(p)
			if !n.dir {
				fmt.Fprintf(&b, " %d bytes", len(n.data))
				if !bytes.Equal(n.data, n.synced) {
					fmt.Fprintf(&b, ", %d synced", len(n.synced))
				}
			}
			if d.durable[name] != n {
				b.WriteString(" (entry not durable)")
			}
			b.WriteByte('\n')
			if n.dir {
				walk(p, n)
			}
		}
	}
	walk("/", m.root)
	return b.String()
}

// memFile is an open file of a MemFS. Its fields are guarded by fs.mu.
type memFile struct {
	fs     *MemFS
	node   *memNode
	name   string
	off    int
	write  bool // opened for writing
	append bool // every write goes to the end
	closed bool
}

var _ File = (*memFile)(nil)

func (f *memFile) Read(p []byte) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.closed {
		return 0, pathError("read", f.name, fs.ErrClosed)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if f.off >= len(f.node.data) {
		return 0, io.EOF
	}
	n := copy(p, f.node.data[f.off:])
	f.off += n
	return n, nil
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.closed {
		return 0, pathError("readat", f.name, fs.ErrClosed)
	}
	if off < 0 {
		return 0, pathError("readat", f.name, errInvalid)
	}
	n := 0
	if off < int64(len(f.node.data)) {
		n = copy(p, f.node.data[off:])
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) Write(p []byte) (int, error) {
	err := f.fs.mutate(OpWrite, f.name, "", func() error {
		if f.closed {
			return fs.ErrClosed
		}
		if !f.write {
			return errBadFd
		}
		if f.append {
			f.off = len(f.node.data)
		}
		f.node.writeAt(p, f.off)
		f.off += len(p)
		return nil
	})
	if err != nil {
		return 0, pathError("write", f.name, err)
	}
	return len(p), nil
}

func (f *memFile) Sync() error {
	err := f.fs.mutate(OpSync, f.name, "", func() error {
		if f.closed {
			return fs.ErrClosed
		}
		f.node.sync()
		return nil
	})
	if err != nil {
		return pathError("sync", f.name, err)
	}
	return nil
}

func (f *memFile) Truncate(size int64) error {
	err := f.fs.mutate(OpTruncate, f.name, "", func() error {
		switch {
		case f.closed:
			return fs.ErrClosed
		case !f.write || size < 0:
			return errInvalid
		}
		f.node.truncate(int(size))
		return nil
	})
	if err != nil {
		return pathError("truncate", f.name, err)
	}
	return nil
}

func (f *memFile) Stat() (os.FileInfo, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.closed {
		return nil, pathError("stat", f.name, fs.ErrClosed)
	}
	return f.node.info(path.Base(f.name)), nil
}

func (f *memFile) Close() error {
	err := f.fs.mutate(OpClose, f.name, "", func() error {
		if f.closed {
			return fs.ErrClosed
		}
		f.closed = true
		return nil
	})
	if err != nil {
		return pathError("close", f.name, err)
	}
	return nil
}
