package upgrade

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ambr-dev/ambr/engine/supervise"
	"github.com/ambr-dev/ambr/logfmt"
)

func TestBuildFor(t *testing.T) {
	dir := t.TempDir()
	kept := filepath.Join(dir, "v2")
	if err := os.WriteFile(kept, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	v1 := logfmt.AppBuild{Source: "./server", Path: "/bin/v1", SHA256: "aaa", Args: []string{"--x"}}
	v1b := logfmt.AppBuild{Source: "./server", Path: "/bin/v1b", SHA256: "bbb"}
	v2 := logfmt.AppBuild{Source: "./server-v2", Path: kept, SHA256: "ccc"}
	upgraded := &logfmt.Manifest{Version: 1, App: v2, Builds: []logfmt.BuildRecord{
		{App: v1, FromCheckpoint: 1}, {App: v1b, FromCheckpoint: 3}, {App: v2, FromCheckpoint: 5, Version: 1}}}
	for _, tc := range []struct {
		name  string
		m     *logfmt.Manifest
		given logfmt.AppBuild
		want  string
	}{
		{"the old build of an upgraded instance runs the current one", upgraded, v1, kept},
		{"so does another build of the old version", upgraded, v1b, kept},
		{"the current build runs", upgraded, v2, kept},
		{"a build the instance never ran is the user's choice", upgraded, logfmt.AppBuild{Path: "/bin/new", SHA256: "ddd"}, "/bin/new"},
		{"no upgrade, no change", &logfmt.Manifest{App: v1b, Builds: []logfmt.BuildRecord{{App: v1, FromCheckpoint: 1}, {App: v1b, FromCheckpoint: 3}}}, v1, "/bin/v1"},
		{"the current build is gone", &logfmt.Manifest{Version: 1, App: logfmt.AppBuild{Path: "/nonexistent", SHA256: "ccc"}, Builds: upgraded.Builds}, v1, "/bin/v1"},
		{"a build that ran the current version too", &logfmt.Manifest{Version: 1, App: v2, Builds: append(upgraded.Builds, logfmt.BuildRecord{App: v1, Version: 1})}, v1, "/bin/v1"},
	} {
		got, ok := BuildFor(tc.m, tc.given)
		if got.Path != tc.want || ok != (tc.want != tc.given.Path) {
			t.Errorf("%s: BuildFor = %s, %v; want %s", tc.name, got.Path, ok, tc.want)
		}
		if ok && len(got.Args) != len(tc.given.Args) {
			t.Errorf("%s: the given arguments are not kept: %v", tc.name, got.Args)
		}
	}
}

// TestWaitRunEnds: a request taken by a run that ends before answering
// is reported (ErrStopped), also when another run has started meanwhile;
// an answer is read.
func TestWaitRunEnds(t *testing.T) {
	dir := t.TempDir()
	req, err := Ask(dir, logfmt.AppBuild{Path: "/bin/v2"})
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := Pending(dir); !ok || p.Requested != req.Requested {
		t.Fatalf("Pending = %+v, %v", p, ok)
	}
	run := "run-1"
	polls := 0
	o := WaitOptions{Timeout: time.Minute, Run: func() (string, bool) {
		polls++
		switch polls {
		case 2:
			os.Remove(filepath.Join(dir, RequestFile)) // run-1 takes it
		case 4:
			run = "run-2" // run-1 was killed; another started
		}
		return run, true
	}}
	if _, err := Wait(context.Background(), dir, req, o); !errors.Is(err, ErrStopped) {
		t.Fatalf("Wait = %v, want ErrStopped", err)
	}
	req, _ = Ask(dir, logfmt.AppBuild{Path: "/bin/v2"})
	if !Cancel(dir) || Cancel(dir) {
		t.Fatal("Cancel: want true once, then false")
	}
	if err := writeJSONFile(filepath.Join(dir, ResultFile), Result{Instance: "s", OK: true, Version: 1, Requested: req.Requested}); err != nil {
		t.Fatal(err)
	}
	res, err := Wait(context.Background(), dir, req, WaitOptions{Timeout: time.Minute, Run: func() (string, bool) { return "", false }})
	if err != nil || !res.OK || res.Version != 1 {
		t.Fatalf("Wait = %+v, %v; want the answer", res, err)
	}
}

// TestWaitTwoAtOnce: two `ambr upgrade` of one instance at once. The second
// request replaces the first before any run takes it; the first one's Wait
// then gives up, and must neither withdraw the second one's request nor
// say that the run did not answer. And a request asked while an answer
// to another is on its way must not delete that answer.
func TestWaitTwoAtOnce(t *testing.T) {
	dir := t.TempDir()
	a, err := Ask(dir, logfmt.AppBuild{Path: "/bin/v2"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Ask(dir, logfmt.AppBuild{Path: "/bin/v3"})
	if err != nil {
		t.Fatal(err)
	}
	if b.Requested == a.Requested {
		b.Requested++
		if err := writeJSONFile(filepath.Join(dir, RequestFile), b); err != nil {
			t.Fatal(err)
		}
	}
	running := func() (string, bool) { return "run-1", true }
	_, err = Wait(context.Background(), dir, a, WaitOptions{Timeout: 300 * time.Millisecond, Run: running})
	if !errors.Is(err, ErrSuperseded) {
		t.Errorf("Wait(first) = %v, want ErrSuperseded", err)
	}
	if p, ok := Pending(dir); !ok || p.Requested != b.Requested {
		t.Fatalf("after the first Wait gave up, Pending = %+v, %v; want the second request still waiting", p, ok)
	}

	// The run takes b and answers it; a third request comes before b's
	// Wait has read the answer.
	os.Remove(filepath.Join(dir, RequestFile))
	if err := writeJSONFile(filepath.Join(dir, ResultFile), Result{Instance: "s", OK: true, Version: 2, Requested: b.Requested}); err != nil {
		t.Fatal(err)
	}
	if _, err := Ask(dir, logfmt.AppBuild{Path: "/bin/v4"}); err != nil {
		t.Fatal(err)
	}
	res, err := Wait(context.Background(), dir, b, WaitOptions{Timeout: time.Minute, Run: running})
	if err != nil || !res.OK || res.Version != 2 {
		t.Fatalf("Wait(second) = %+v, %v; want its answer", res, err)
	}
}

// takenCoordinator is a coordinator whose app connection has taken the
// upgrade: CancelUpgrade has nothing to withdraw (and says it was called).
type takenCoordinator struct{ cancelled chan struct{} }

func (takenCoordinator) PrepareUpgrade(logfmt.AppBuild) {}
func (c takenCoordinator) CancelUpgrade() bool {
	close(c.cancelled)
	return false
}

// TestFinishSlowConversion: a new build that connected in time but takes
// longer than the connect timeout to convert and checkpoint its state is
// not switched back (which would kill it mid-upgrade and report that it
// never connected): its outcome decides.
func TestFinishSlowConversion(t *testing.T) {
	defer func(d time.Duration) { connectTimeout = d }(connectTimeout)
	connectTimeout = time.Millisecond
	u := NewLive(t.TempDir(), "s")
	c := takenCoordinator{cancelled: make(chan struct{})}
	u.c, u.child, u.log = c, &supervise.Child{}, slog.New(slog.NewTextHandler(io.Discard, nil))
	old := logfmt.AppBuild{Path: "/bin/v1"}
	u.setCurrent(old)
	go func() {
		<-c.cancelled // the connect timeout passed
		u.OnUpgrade(nil)
	}()
	res := u.finish(context.Background(), Request{Build: logfmt.AppBuild{Path: "/bin/v2"}, Requested: 1}, old)
	if !res.OK || u.build().Path != "/bin/v2" {
		t.Fatalf("finish = %+v, build %s; want the upgrade that connected to succeed", res, u.build().Path)
	}
}

// TestWaitTakenNoAnswer: a request the run took and has not answered in
// time is still under way: Wait says so (not ErrNoAnswer, whose advice is
// to restart the run).
func TestWaitTakenNoAnswer(t *testing.T) {
	dir := t.TempDir()
	req, err := Ask(dir, logfmt.AppBuild{Path: "/bin/v2"})
	if err != nil {
		t.Fatal(err)
	}
	Cancel(dir) // the run took it
	_, err = Wait(context.Background(), dir, req, WaitOptions{Timeout: 200 * time.Millisecond, Run: func() (string, bool) { return "run-1", true }})
	if !errors.Is(err, ErrUnderWay) {
		t.Fatalf("Wait = %v, want ErrUnderWay", err)
	}
}

// TestTake: the run takes the waiting request whole, and leaves nothing
// of it behind.
func TestTake(t *testing.T) {
	dir := t.TempDir()
	req, err := Ask(dir, logfmt.AppBuild{Path: "/bin/v2"})
	if err != nil {
		t.Fatal(err)
	}
	u := NewLive(dir, "s")
	got, res, ok := u.take()
	if !ok || res != nil || got.Requested != req.Requested || got.Build.Path != "/bin/v2" {
		t.Fatalf("take = %+v, %+v, %v; want the request", got, res, ok)
	}
	if _, pending := Pending(dir); pending {
		t.Fatal("the request is still pending after it was taken")
	}
	if _, _, ok := u.take(); ok {
		t.Fatal("took a request twice")
	}
	if names, _ := filepath.Glob(filepath.Join(dir, "*")); len(names) != 0 {
		t.Fatalf("left %v", names)
	}
}
