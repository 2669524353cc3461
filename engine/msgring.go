package engine

// msgRing is a FIFO of output messages: an output buffer takes messages at
// the back and drops acknowledged ones at the front, millions of times a
// second under load. A ring reuses its array instead of sliding a slice
// along one (which reallocates and copies the live part every time it
// reaches the end, and keeps the dropped messages reachable until then).
type msgRing struct {
	buf  []outMsg // len is 0 or a power of two
	head int
	n    int
}

func (r *msgRing) len() int { return r.n }

// at returns the i-th message from the front.
func (r *msgRing) at(i int) outMsg { return r.buf[(r.head+i)&(len(r.buf)-1)] }

// set replaces the i-th message from the front.
func (r *msgRing) set(i int, m outMsg) { r.buf[(r.head+i)&(len(r.buf)-1)] = m }

func (r *msgRing) push(m outMsg) {
	if r.n == len(r.buf) {
		nb := make([]outMsg, max(16, 2*len(r.buf)))
		for i := 0; i < r.n; i++ {
			nb[i] = r.at(i)
		}
		r.buf, r.head = nb, 0
	}
	r.buf[(r.head+r.n)&(len(r.buf)-1)] = m
	r.n++
}

// pop drops the front message.
func (r *msgRing) pop() {
	r.buf[r.head] = outMsg{}
	r.head = (r.head + 1) & (len(r.buf) - 1)
	r.n--
}
