// Package vfs is the small file system interface through which all of the
// coordinator's disk work goes, so that tests can swap the disk for one that
// crashes or fails on command:
//
//	          coordinator: MANIFEST, v0/log-<n>, v0/chkpt-<n>
//	                       │
//	                  vfs.FS, vfs.File
//	     ┌─────────────────┼──────────────────────┐
//	vfs.Default()     *vfs.MemFS               *vfs.ErrorFS
//	the OS; Sync is   in memory; CrashClone    wraps any FS, fails the
//	fdatasync         gives the state after    operations an Injector
//	                  a crash at any op        picks (EIO, ENOSPC, ...)
//
// The interface is shaped by what the coordinator does: it appends to log
// segments and syncs them, writes checkpoints, replaces the MANIFEST
// atomically (write MANIFEST.tmp, Sync, Rename over MANIFEST, SyncDir), and on
// recovery reads, truncates a torn tail and appends again. Files have no Seek
// and no WriteAt: every write is an append.
//
// # Durability
//
// Two barriers make things durable, as on a real disk: File.Sync for a
// file's data, FS.SyncDir for the entries of a directory (files created,
// renamed or removed in it, subdirectories made by MkdirAll). A file that is
// synced but whose directory is not may vanish in a crash; a rename whose
// directory is not synced may be undone.
//
// # The crash model of MemFS
//
// MemFS keeps, for each file, its current contents and its contents as of
// its last Sync, and for each directory, its current entries and its entries
// as of its last SyncDir. MemFS.CrashClone builds the disk after a crash:
//
//	file  v0/log-3   [ synced ............ | written since the last Sync ]
//	                                       └─ a crash keeps none, all, or a
//	                                          random prefix of this tail
//	dir   v0/        entries as of SyncDir   vs   current entries
//	                 └─ for each name where they differ, a crash keeps the
//	                    durable entry, the current one, or one at random
//
// Each surviving directory entry keeps the node it names in the chosen
// version (so a rename not made durable leaves the old name, the new name, or,
// with random choices, both or neither; a replaced MANIFEST whose directory
// was synced before is always there, old or new). The node's contents are
// then decided on their own, and a node reachable under two names becomes
// two independent files.
//
// For contents, writes past the synced length are the "unsynced tail" and a
// crash keeps a prefix of it: this models appends exactly, which is all the
// coordinator does. Truncate (and Create over an existing file) cuts the
// file down to a length c; until the next Sync a random crash keeps either
// the synced contents or the current contents cut anywhere between c and
// their end (the truncation persisted with some of the later appends). A
// write inside existing contents (only possible after Truncate extends a
// file) has no prefix model: a random crash keeps the synced or the current
// contents whole. KeepScattered models a disk that writes an appended tail's
// sectors in any order: the file is cut anywhere in the tail, and each
// 512-byte sector of what is left past the synced length survives or reads
// as zeros, independently. A failed Sync is not modelled: ErrorFS's injected Sync
// errors leave the data unsynced, and callers treat them as fatal.
//
// # Errors
//
// All errors are *fs.PathError (*os.LinkError for Rename) wrapped with a
// "vfs: " prefix and carrying a real errno, so errors.Is works with
// fs.ErrNotExist, fs.ErrExist, fs.ErrClosed, syscall.EIO, syscall.ENOSPC:
//
//	vfs: sync /inst/v0/log-3: input/output error
//
// Read and ReadAt return io.EOF unwrapped.
package vfs
