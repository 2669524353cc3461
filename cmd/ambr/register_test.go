package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ambr-dev/ambr/engine/ambrosia"
	"github.com/ambr-dev/ambr/engine/supervise"
	"github.com/ambr-dev/ambr/internal/azurite"
)

// TestRunAmbrosiaRegistration: `ambr run --external-app
// --ambrosia-registration` writes, before the app can connect, the
// registration AMBROSIA's bindings read, with the ports the coordinator
// listens on; after a SIGKILL and a restart on new ports it is rewritten.
// `ambr register NAME` writes the same for the running instance.
func TestRunAmbrosiaRegistration(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes and azurite; go test without -short runs it")
	}
	conn := azurite.Start(t)
	ambr, _ := binaries(t)
	home := t.TempDir()
	env := append(os.Environ(), ambrosia.EnvConnString+"="+conn)
	start := func() (*exec.Cmd, *syncBuffer, supervise.RunStatus) {
		out := &syncBuffer{}
		cmd := exec.Command(ambr, "--home", home, "run", "--external-app", "--ambrosia-registration", "--name", "pti", "./PTI.js")
		cmd.Env, cmd.Stdout, cmd.Stderr = env, out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			if st, ok := supervise.ReadRunStatus(filepath.Join(home, "pti")); ok && st.ICPid == cmd.Process.Pid {
				return cmd, out, st
			}
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				t.Fatalf("the coordinator did not come up:\n%s", out.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	check := func(st supervise.RunStatus) {
		t.Helper()
		p, err := ambrosia.ReadRegistration(context.Background(), conn, "pti", 0)
		if err != nil {
			t.Fatal(err)
		}
		if p.ServiceReceiveFromPort != st.RecvPort || p.ServiceSendToPort != st.SendPort || p.ServiceName != "pti" ||
			!strings.HasSuffix(p.ServiceLogPath, string(filepath.Separator)+filepath.Join("pti")+string(filepath.Separator)) {
			t.Errorf("registration %+v, want ports %d/%d and the instance directory", p, st.RecvPort, st.SendPort)
		}
	}
	cmd, _, st := start()
	check(st)
	_ = cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	cmd, out, st2 := start()
	check(st2)

	reg := exec.Command(ambr, "--home", home, "register", "pti", "--json")
	reg.Env = env
	b, err := reg.CombinedOutput()
	if err != nil || !strings.Contains(string(b), `"blob": "AmbrosiaBinaries/pti-pti0"`) {
		t.Errorf("ambr register pti: %v\n%s", err, b)
	}
	check(st2)
	_ = cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err != nil {
		t.Errorf("ambr run after Ctrl-C: %v\n%s", err, out.String())
	}
}
