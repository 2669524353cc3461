package logfmt

import (
	"encoding/binary"
	"encoding/json"
	"fmt"

	"github.com/cespare/xxhash/v2"
)

// MANIFEST constants. Part of the format.
const (
	// ManifestMagic opens the MANIFEST file.
	ManifestMagic = "ambrman\x00"
	// ManifestFormatVersion is the version of the MANIFEST framing.
	ManifestFormatVersion = 1
	// MaxManifestBody bounds the MANIFEST's JSON body.
	MaxManifestBody = 1 << 20
)

// AppBuild identifies the build of the app that ran an instance, so tools
// can replay its history with the very same code.
type AppBuild struct {
	// Source is what the user named: a Go package path or an executable.
	Source string `json:"source,omitempty"`
	// Path is where the exact binary is kept (content-addressed under the
	// home), empty for an app the coordinator did not start.
	Path string `json:"path,omitempty"`
	// SHA256 is the hex content hash of the binary.
	SHA256 string `json:"sha256,omitempty"`
	// Args are the arguments the app was started with.
	Args []string `json:"args,omitempty"`
}

// Manifest is the small, atomically replaced file at the root of an instance
// directory that says which files are live.
type Manifest struct {
	Instance    string `json:"instance"`
	CommitterID int32  `json:"committer_id"`
	// Version is the current app version; UpgradeVersion the one being
	// upgraded to (equal to Version when no upgrade is under way). Log and
	// checkpoint files live under v<Version>/.
	Version        uint32 `json:"version"`
	UpgradeVersion uint32 `json:"upgrade_version"`
	// Checkpoint is the number of the newest valid checkpoint, 0 before the
	// first one was written.
	Checkpoint uint64 `json:"checkpoint"`
	// FirstSegment is the oldest log segment still kept; with the default
	// retention it is 1.
	FirstSegment uint64 `json:"first_segment"`
	// App is the build that last ran the instance.
	App AppBuild `json:"app"`
	// Builds lists every build that ran the instance, oldest first, with the
	// first checkpoint it produced.
	Builds []BuildRecord `json:"builds,omitempty"`
	// Created and Updated are Unix nanoseconds.
	Created int64 `json:"created"`
	Updated int64 `json:"updated"`

	// Epoch is the promotion epoch of the replica that wrote this MANIFEST
	// (0: an instance that never ran with replicas). Each promotion of a
	// standby raises it.
	Epoch uint64 `json:"epoch,omitempty"`
	// Seals are segment number → length in bytes of the segment's valid
	// part, set by a promoted replica for the segment its predecessor was
	// writing. Readers stop a sealed segment there: bytes a deposed primary
	// appended after the seal were never acknowledged and are never read.
	Seals map[uint64]int64 `json:"seals,omitempty"`
}

// Seal returns the length of segment n's valid part and true if n is
// sealed.
func (m *Manifest) Seal(n uint64) (int64, bool) {
	if m == nil || m.Seals == nil {
		return 0, false
	}
	l, ok := m.Seals[n]
	return l, ok
}

// BuildRecord says that a build ran the instance from a checkpoint on.
type BuildRecord struct {
	App            AppBuild `json:"app"`
	FromCheckpoint uint64   `json:"from_checkpoint"`
	// Version is the app version the build ran as (0 in MANIFESTs written
	// before it was recorded).
	Version uint32 `json:"version,omitempty"`
}

// EncodeManifest returns the file content for m:
// magic, version, body length, JSON body, xxhash64 of all before it.
func EncodeManifest(m *Manifest) ([]byte, error) {
	body, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("logfmt: encode manifest: %w", err)
	}
	if len(body) > MaxManifestBody {
		return nil, fmt.Errorf("logfmt: encode manifest: body of %d bytes, at most %d", len(body), MaxManifestBody)
	}
	b := make([]byte, 0, 16+len(body)+8)
	b = append(b, ManifestMagic...)
	b = binary.LittleEndian.AppendUint32(b, ManifestFormatVersion)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(body)))
	b = append(b, body...)
	return binary.LittleEndian.AppendUint64(b, xxhash.Sum64(b)), nil
}

// DecodeManifest verifies and decodes a MANIFEST file's content.
func DecodeManifest(b []byte) (*Manifest, error) {
	if len(b) < 16 {
		return nil, fmt.Errorf("%w at offset 0: manifest of %d bytes, needs at least 24", ErrTruncated, len(b))
	}
	if string(b[:8]) != ManifestMagic {
		return nil, fmt.Errorf("%w at offset 0: not an ambr MANIFEST (magic %q)", ErrCorrupt, b[:8])
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != ManifestFormatVersion {
		return nil, fmt.Errorf("%w at offset 8: manifest format version %d, this build reads %d", ErrCorrupt, v, ManifestFormatVersion)
	}
	n := int(binary.LittleEndian.Uint32(b[12:]))
	if n > MaxManifestBody {
		return nil, fmt.Errorf("%w at offset 12: manifest body length %d out of range", ErrCorrupt, n)
	}
	if len(b) < 16+n+8 {
		return nil, fmt.Errorf("%w at offset %d: manifest cut short", ErrTruncated, len(b))
	}
	if len(b) > 16+n+8 {
		return nil, fmt.Errorf("%w at offset %d: %d bytes after the manifest", ErrCorrupt, 16+n+8, len(b)-(16+n+8))
	}
	if got, want := binary.LittleEndian.Uint64(b[16+n:]), xxhash.Sum64(b[:16+n]); got != want {
		return nil, fmt.Errorf("%w at offset %d: manifest checksum %016x, computed %016x", ErrCorrupt, 16+n, got, want)
	}
	m := new(Manifest)
	if err := json.Unmarshal(b[16:16+n], m); err != nil {
		return nil, fmt.Errorf("%w at offset 16: manifest body: %v", ErrCorrupt, err)
	}
	return m, nil
}
