package logfmt

import "runtime/debug"

// giantRelease is the capacity from which a buffer replaced while reading a
// giant frame is handed back to the OS at once rather than left to the
// collector. Not part of the format.
//
// Why: a stream decoder grows a giant frame's buffer by doubling as its
// bytes arrive (a claimed length must cost nothing until it is sent), so
// each step leaves the previous buffer, half the new one, as garbage. With
// GOGC at 100 the heap may grow to twice what was live at the last
// collection before the next one, so those buffers stay resident next to the
// next ones: the receiving app of a 256 MiB message peaked at 3.1× its size
// (ambr bench giant, BENCHMARKS.md). debug.FreeOSMemory collects and returns
// the freed pages; it costs a collection of the (small) rest of the heap,
// about a millisecond, next to the ~5 ms of copying 16 MiB that preceded it.
const giantRelease = 16 << 20

// growBuffer returns a buffer of capacity want holding b's bytes. If b was
// giant it is garbage once the caller drops it: the caller then calls
// releaseGiant(cap(old)) after replacing its reference, so that the old
// buffer is unreachable when the collector runs.
func growBuffer(b []byte, want int) []byte {
	nb := make([]byte, len(b), want)
	copy(nb, b)
	return nb
}

// releaseGiant returns freed memory to the OS when a buffer of capacity c
// has just been dropped and c is at least giantRelease. See giantRelease.
func releaseGiant(c int) {
	if c >= giantRelease {
		debug.FreeOSMemory()
	}
}

// nextCap returns the capacity to grow a full buffer of capacity c (c <
// size) to, on the way to holding size bytes: at least c+1 and at most
// max(2c+1, least), so never much more than twice the bytes that arrived.
// The steps are the halvings of size (size, size/2, size/4, … rounded up)
// rather than the doublings of c, so the last step lands on size: doubling
// overshoots, and for a frame just over a power of two (a 256 MiB payload
// and its headers) it ended with one more whole copy, the buffer at 2× the
// frame while the last one was copied.
func nextCap(c, size, least int) int {
	w := size
	for w/2 > c {
		w -= w / 2
	}
	if w < least {
		w = min(size, least)
	}
	return w
}
