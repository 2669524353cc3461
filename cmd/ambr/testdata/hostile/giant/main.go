// Command giant speaks the app protocol by hand and, on its first input,
// starts sending a fork of itself whose size field says 1.1 GB: over the
// coordinator's 1 GiB limit. It writes the message's head and a little of
// its body, then waits. The oversize scenario runs it.
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/ambr-dev/ambr/engine/immortal"
	"github.com/ambr-dev/ambr/logfmt"
)

const claimed = 1_100_000_000

func main() {
	dial := func(env string) net.Conn {
		c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", os.Getenv(env)))
		if err != nil {
			fmt.Fprintln(os.Stderr, "giant:", err)
			os.Exit(2)
		}
		return c
	}
	toIC := dial("AMBROSIA_IC_RECEIVE_PORT")
	fromIC := dial("AMBROSIA_IC_SEND_PORT")
	rr := logfmt.NewRecordReader(fromIC)
	state := []byte("{}")
	recovered := false
	for {
		h, body, err := rr.Next()
		if err != nil {
			fmt.Fprintln(os.Stderr, "giant: read:", err)
			os.Exit(1)
		}
		it := logfmt.NewMessageIter(body)
		for m, ok := it.Next(); ok; m, ok = it.Next() {
			switch m.Type {
			case logfmt.TypeCheckpoint:
				recovered = true
				_, _ = io.Copy(io.Discard, rr.State())
			case logfmt.TypeTakeBecomingPrimaryCheckpoint, logfmt.TypeTakeCheckpoint:
				var out []byte
				if !recovered {
					out = logfmt.AppendInitialMessage(out, immortal.Envelope{}.Append(nil))
				}
				out = logfmt.AppendCheckpointMessage(out, int64(len(state)))
				out = append(out, state...)
				write(toIC, out)
			}
		}
		if h.Seq >= 1 {
			sendGiant(toIC)
			time.Sleep(time.Hour)
		}
	}
}

// sendGiant writes the head of an oversize self-fork of method Giant.
func sendGiant(w io.Writer) {
	args := immortal.Envelope{Method: "Giant"}.Append(nil)
	framed := logfmt.AppendOutgoingRPC(nil, "", logfmt.RPC{MethodID: immortal.MethodID("Giant"), Kind: logfmt.RPCFork, Args: args})
	m, _, err := logfmt.ParseMessage(framed)
	if err != nil {
		panic(err)
	}
	// The same message, with a size field that claims more.
	head := logfmt.AppendZigZag(nil, claimed)
	head = append(head, byte(logfmt.TypeRPC))
	head = append(head, m.Data...)
	head = append(head, make([]byte, 64<<10)...)
	write(w, head)
}

func write(w io.Writer, b []byte) {
	if _, err := w.Write(b); err != nil {
		fmt.Fprintln(os.Stderr, "giant: write:", err)
		os.Exit(1)
	}
}
