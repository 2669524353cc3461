// Command halfpair is an app that dies between its two connects: on its
// first N starts it connects to the coordinator's receive port and, a
// moment later, exits before connecting to the send port; after that it
// becomes the real app (exec). Usage: halfpair MARKER N APP [ARGS...];
// MARKER counts starts.
package main

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 4 {
		fmt.Fprintln(os.Stderr, "usage: halfpair MARKER N APP [ARGS...]")
		os.Exit(2)
	}
	marker, app := os.Args[1], os.Args[3]
	n, err := strconv.Atoi(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, "halfpair: N:", err)
		os.Exit(2)
	}
	b, _ := os.ReadFile(marker)
	starts := len(b)
	if err := os.WriteFile(marker, append(b, '.'), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "halfpair:", err)
		os.Exit(2)
	}
	if starts < n {
		c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", os.Getenv("AMBROSIA_IC_RECEIVE_PORT")))
		if err != nil {
			fmt.Fprintln(os.Stderr, "halfpair:", err)
			os.Exit(2)
		}
		// Alive long enough to be taken for the app's first half, then gone.
		time.Sleep(300 * time.Millisecond)
		_ = c
		fmt.Fprintf(os.Stderr, "halfpair: start %d connected to the receive port only; dying\n", starts+1)
		os.Exit(1)
	}
	err = syscall.Exec(app, os.Args[3:], os.Environ())
	fmt.Fprintln(os.Stderr, "halfpair: exec:", err)
	os.Exit(2)
}
