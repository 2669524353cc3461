package bench

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// The raw TCP baseline: the "good application-specific strategy" — the same
// flow (a window of unacknowledged messages; one-way acknowledged every
// window/4 messages, echo message by message) and ambr's adaptive batching
// (frames queue while a write is under way and go out together in the
// next), with no logging and no framework: length-prefixed frames over one
// loopback connection.

// frameQueue batches frames for one connection: whatever was queued while
// the previous write was under way goes out in one write.
type frameQueue struct {
	mu     sync.Mutex
	cond   *sync.Cond
	buf    []byte
	spare  []byte
	closed bool
}

func newFrameQueue() *frameQueue {
	q := &frameQueue{}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// add appends n frames made by f under the queue's lock.
func (q *frameQueue) add(f func(b []byte) []byte) {
	q.mu.Lock()
	q.buf = f(q.buf)
	q.mu.Unlock()
	q.cond.Signal()
}

func (q *frameQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.cond.Signal()
}

func (q *frameQueue) writeTo(w io.Writer) error {
	for {
		q.mu.Lock()
		for len(q.buf) == 0 && !q.closed {
			q.cond.Wait()
		}
		if len(q.buf) == 0 {
			q.mu.Unlock()
			return nil
		}
		b := q.buf
		q.buf, q.spare = q.spare[:0], nil
		q.mu.Unlock()
		if _, err := w.Write(b); err != nil {
			return err
		}
		q.mu.Lock()
		q.spare = b[:0]
		q.mu.Unlock()
	}
}

func appendFrame(b, p []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(p)))
	return append(b, p...)
}

// readFrame reads a frame into buf (grown as needed) and returns it.
func readFrame(r *bufio.Reader, buf []byte) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.LittleEndian.Uint32(hdr[:]))
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	_, err := io.ReadFull(r, buf)
	return buf, err
}

// runTCP sends total messages of size bytes with at most window
// unacknowledged, and returns the time until the server got the last one
// (one-way) or its echo arrived.
func runTCP(ctx context.Context, size int, total, window int64, echo bool) (time.Duration, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	ackEvery := max(1, window/4)
	serverDone := make(chan error, 1)
	got := make(chan struct{})
	go func() {
		c, err := ln.Accept()
		if err != nil {
			serverDone <- err
			return
		}
		defer c.Close()
		out := newFrameQueue()
		werr := make(chan error, 1)
		go func() { werr <- out.writeTo(c) }()
		r := bufio.NewReaderSize(c, 256<<10)
		var buf []byte
		var msgs, acked int64
		var ack [8]byte
		for msgs < total {
			p, err := readFrame(r, buf)
			if err != nil {
				out.close()
				serverDone <- err
				return
			}
			buf = p
			msgs++
			switch {
			case echo:
				out.add(func(b []byte) []byte { return appendFrame(b, p) })
			case msgs-acked >= ackEvery || msgs == total:
				acked = msgs
				binary.LittleEndian.PutUint64(ack[:], uint64(msgs))
				out.add(func(b []byte) []byte { return appendFrame(b, ack[:]) })
			}
		}
		if !echo {
			close(got)
		}
		out.close()
		serverDone <- <-werr
	}()

	d := net.Dialer{}
	c, err := d.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		return 0, err
	}
	defer c.Close()
	payload := make([]byte, size)
	var mu sync.Mutex
	cond := sync.NewCond(&mu)
	var ackedMsgs int64
	var readErr error
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		r := bufio.NewReaderSize(c, 256<<10)
		var buf []byte
		for {
			p, err := readFrame(r, buf)
			mu.Lock()
			if err != nil {
				readErr = err
				mu.Unlock()
				cond.Broadcast()
				return
			}
			buf = p
			if echo {
				ackedMsgs++
			} else if len(p) == 8 {
				ackedMsgs = max(ackedMsgs, int64(binary.LittleEndian.Uint64(p)))
			}
			done := ackedMsgs == total
			mu.Unlock()
			cond.Broadcast()
			if done {
				return
			}
		}
	}()
	out := newFrameQueue()
	werr := make(chan error, 1)
	go func() { werr <- out.writeTo(c) }()
	chunk := max(1, int64(256<<10)/int64(size))
	start := time.Now()
	var sent int64
	for sent < total {
		mu.Lock()
		for sent-ackedMsgs >= window && readErr == nil {
			cond.Wait()
		}
		// At most chunk frames at a time, so that the writer starts on the
		// first while the rest are framed.
		n, rerr := min(window-(sent-ackedMsgs), total-sent, chunk), readErr
		mu.Unlock()
		if rerr != nil {
			return 0, fmt.Errorf("tcp client: %w", rerr)
		}
		out.add(func(b []byte) []byte {
			for range n {
				b = appendFrame(b, payload)
			}
			return b
		})
		sent += n
	}
	if echo {
		<-readDone
	} else {
		select {
		case <-got:
		case err := <-serverDone:
			return 0, fmt.Errorf("tcp server: %v", err)
		}
	}
	el := time.Since(start)
	out.close()
	if err := <-werr; err != nil {
		return 0, err
	}
	mu.Lock()
	rerr := readErr
	mu.Unlock()
	if echo && rerr != nil {
		return 0, fmt.Errorf("tcp client: %w", rerr)
	}
	<-readDone
	if err := <-serverDone; err != nil {
		return 0, fmt.Errorf("tcp server: %w", err)
	}
	return el, nil
}
