package engine

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/engine/vfs"
	"github.com/ambr-dev/ambr/logfmt"
)

// writeCheckpointFile writes checkpoint ck as dir/chkpt-<n> and makes it
// durable: contents synced, then the directory entry. A crash in the middle
// leaves a file that fails its checksum; recovery then uses the previous
// checkpoint, which the MANIFEST still names.
//
// With replicas (fence set) the file is created under the fence, so that a
// deposed primary cannot create (and truncate) a checkpoint file its
// successor uses: a successor numbers its files above every one present.
func writeCheckpointFile(fsys vfs.FS, dir string, ck *logfmt.Checkpoint, fence Fence) error {
	path := filepath.Join(dir, layout.CheckpointName(ck.Number))
	var f vfs.File
	err := fenced(fence, func() (err error) {
		if fence != nil {
			if _, err := fsys.Stat(path); err == nil {
				// The checkpointer made it (a primary numbers its own
				// above every file present): the same state, durable.
				return errCheckpointExists
			}
		}
		f, err = fsys.Create(path)
		if err != nil {
			return fmt.Errorf("write checkpoint: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := logfmt.WriteCheckpoint(f, ck); err != nil {
		f.Close()
		return fmt.Errorf("write checkpoint %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write checkpoint: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write checkpoint: %w", err)
	}
	if err := fsys.SyncDir(dir); err != nil {
		return fmt.Errorf("write checkpoint: %w", err)
	}
	return nil
}

// errCheckpointExists says the checkpoint file is there already.
var errCheckpointExists = errors.New("the checkpoint exists")

// writeManifest replaces dir/MANIFEST atomically: write a temporary file,
// sync it, rename it over the old one, sync the directory.
func writeManifest(fsys vfs.FS, dir string, m *logfmt.Manifest) error {
	b, err := logfmt.EncodeManifest(m)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, layout.ManifestTempFile)
	f, err := fsys.Create(tmp)
	if err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write manifest: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write manifest: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	if err := fsys.Rename(tmp, filepath.Join(dir, layout.ManifestFile)); err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	if err := fsys.SyncDir(dir); err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	return nil
}
