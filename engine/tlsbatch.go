package engine

import (
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"
)

// A tls.Conn writes every TLS record (at most 16 KiB of plaintext) with a
// write of its own to the connection under it: a 256 KiB chunk of a peer
// queue costs 16 system calls. recordGatherer sits under the tls.Conn and,
// while a batch is written, gathers the records in a buffer that goes out
// in one write when the batch ends. Outside a batch (the handshake, the
// hello) it writes through.
type recordGatherer struct {
	net.Conn
	mu        sync.Mutex
	gathering bool
	buf       []byte
}

func (g *recordGatherer) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.gathering {
		g.buf = append(g.buf, p...)
		return len(p), nil
	}
	return g.Conn.Write(p)
}

// maxGathered bounds what is gathered for one write: a chunk larger than
// this (a giant message's frame of its own) is written record by record
// rather than copied whole.
const maxGathered = frameChunkSize

// gatheredTLS is a TLS connection over a recordGatherer.
type gatheredTLS struct {
	*tls.Conn
	g *recordGatherer
	// flushing is set while gathered records are written: tls.Conn.Close
	// would then queue its close_notify behind a write a stalled peer may
	// never take, for up to its 5 s deadline, where a Close during a
	// tls.Conn Write closes at once.
	flushing atomic.Bool
}

// Close closes the connection; during a write of gathered records, at once
// and without close_notify, as tls.Conn does during a Write.
func (t *gatheredTLS) Close() error {
	if t.flushing.Load() {
		return t.g.Conn.Close()
	}
	return t.Conn.Close()
}

// newGatheredTLSClient is tls.Client over conn, with writeBatch.
func newGatheredTLSClient(conn net.Conn, cfg *tls.Config) *gatheredTLS {
	g := &recordGatherer{Conn: conn}
	return &gatheredTLS{Conn: tls.Client(g, cfg), g: g}
}

// writeBatch writes bufs, in order, each as TLS records gathered into one
// write of the connection under it (a buffer larger than maxGathered
// record by record).
func (t *gatheredTLS) writeBatch(bufs [][]byte) error {
	for _, b := range bufs {
		if len(b) > maxGathered {
			if _, err := t.Conn.Write(b); err != nil {
				return err
			}
			continue
		}
		t.g.mu.Lock()
		t.g.gathering = true
		t.g.mu.Unlock()
		_, err := t.Conn.Write(b)
		t.g.mu.Lock()
		t.g.gathering = false
		out := t.g.buf
		t.g.buf = nil
		t.g.mu.Unlock()
		if err == nil && len(out) > 0 {
			t.flushing.Store(true)
			_, err = t.g.Conn.Write(out)
			t.flushing.Store(false)
		}
		t.g.mu.Lock()
		t.g.buf = out[:0]
		t.g.mu.Unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

// batchWriter is a connection that writes a batch of buffers better than
// one Write each.
type batchWriter interface {
	writeBatch(bufs [][]byte) error
}
