package azurite

import (
	"net"
	"strings"
	"testing"
)

// TestRunOnATakenPort (found hung under load): an emulator that exits
// before it listens, here on a port another process holds, is an error
// run returns, and the test's cleanup does not wait for the exit again.
func TestRunOnATakenPort(t *testing.T) {
	if testing.Short() {
		t.Skip("runs azurite; go test without -short runs it")
	}
	bin := install(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	free := freePorts(t, 2)
	logs, err := run(t, bin, []int{l.Addr().(*net.TCPAddr).Port, free[0], free[1]})
	if err == nil || !strings.Contains(err.Error(), "exited") {
		t.Fatalf("azurite on a taken port: %v; want it to have exited\n%s", err, logs)
	}
	t.Logf("%v", err)
}
