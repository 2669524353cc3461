package upgrade

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/ambr-dev/ambr/engine"
	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/engine/supervise"
	"github.com/ambr-dev/ambr/engine/vfs"
	"github.com/ambr-dev/ambr/logfmt"
)

// A live upgrade is asked of the `ambr run` that runs the instance through
// two small files in the instance directory (not durable state): the
// client writes RequestFile with the new build, the run takes it (at once
// if it is running, else as it next starts), tries the build, and answers
// in ResultFile.
const (
	RequestFile = "UPGRADE"
	ResultFile  = "UPGRADE.result"
)

// Request asks for an upgrade to Build; Requested (Unix nanoseconds)
// matches the Result to it.
type Request struct {
	Build     logfmt.AppBuild `json:"build"`
	Requested int64           `json:"requested"`
}

// Result is how an upgrade went. Its JSON form is what `ambr upgrade
// --json` prints.
type Result struct {
	Instance  string          `json:"instance"`
	OK        bool            `json:"ok"`
	Pending   bool            `json:"pending,omitempty"`
	Error     string          `json:"error,omitempty"`
	Version   uint32          `json:"version"`
	Build     logfmt.AppBuild `json:"build"`
	Requested int64           `json:"requested"`
	Finished  int64           `json:"finished,omitempty"`
}

func writeJSONFile(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Pending returns the upgrade request waiting in dir, if any.
func Pending(dir string) (*Request, bool) {
	b, err := os.ReadFile(filepath.Join(dir, RequestFile))
	if err != nil {
		return nil, false
	}
	var req Request
	if json.Unmarshal(b, &req) != nil {
		return &Request{}, true // damaged: the run answers so
	}
	return &req, true
}

// LastResult returns the answer to the latest upgrade request of dir's
// instance, if one was answered.
func LastResult(dir string) (*Result, bool) {
	b, err := os.ReadFile(filepath.Join(dir, ResultFile))
	if err != nil {
		return nil, false
	}
	var res Result
	if json.Unmarshal(b, &res) != nil {
		return nil, false
	}
	return &res, true
}

// Cancel withdraws a request no run has taken yet, reporting whether there
// was one.
func Cancel(dir string) bool {
	return os.Remove(filepath.Join(dir, RequestFile)) == nil
}

// withdraw withdraws req if it is the request waiting in dir, and leaves a
// request another `ambr upgrade` asked for in its place alone.
func withdraw(dir string, req Request) {
	if p, ok := Pending(dir); ok && p.Requested == req.Requested {
		Cancel(dir)
	}
}

// Ask writes an upgrade request for build into dir (replacing one not yet
// taken) and returns it; an `ambr run` of the instance takes it at once,
// or when it next starts. The answer to an earlier request stays where its
// Wait finds it (a Result names the request it answers).
func Ask(dir string, build logfmt.AppBuild) (Request, error) {
	req := Request{Build: build, Requested: time.Now().UnixNano()}
	if err := writeJSONFile(filepath.Join(dir, RequestFile), req); err != nil {
		return req, fmt.Errorf("upgrade: write the request: %w", err)
	}
	return req, nil
}

// Errors of Wait.
var (
	// ErrStopped: the instance's ambr run stopped before answering; the
	// request is withdrawn.
	ErrStopped = errors.New("upgrade: the instance stopped before answering")
	// ErrNoAnswer: no answer in time; the request is withdrawn.
	ErrNoAnswer = errors.New("upgrade: no answer in time")
	// ErrUnderWay: the run took the request and has not answered in time
	// (a new build converting a large state); the upgrade goes on.
	ErrUnderWay = errors.New("upgrade: taken, and still under way")
	// ErrSuperseded: another request (another `ambr upgrade` of the
	// instance) replaced this one before any run took it; that one is
	// left waiting.
	ErrSuperseded = errors.New("upgrade: another upgrade request replaced this one before the instance took it")
)

// WaitOptions configure Wait.
type WaitOptions struct {
	Timeout time.Duration
	// Run says which ambr run of the instance runs now (any string that
	// differs between two runs, such as its pid and start time) and
	// whether one runs at all.
	Run func() (id string, running bool)
	// Waiting, if set, is called every few seconds while waiting.
	Waiting func()
}

// Wait waits for the answer to req in dir. The request is taken by
// whichever run of the instance runs; if that run ends before it answers
// (or none runs), Wait withdraws a request not yet taken and returns
// ErrStopped: the MANIFEST then says whether the version moved. It never
// withdraws a request but req.
func Wait(ctx context.Context, dir string, req Request, o WaitOptions) (Result, error) {
	resultPath := filepath.Join(dir, ResultFile)
	answered := func() (Result, bool, error) {
		b, err := os.ReadFile(resultPath)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return Result{}, false, nil
			}
			return Result{}, false, fmt.Errorf("upgrade: read the result: %w", err)
		}
		var res Result
		if json.Unmarshal(b, &res) == nil && res.Requested == req.Requested {
			return res, true, nil
		}
		return Result{}, false, nil
	}
	deadline := time.Now().Add(o.Timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	last := time.Now()
	taker, taken := "", false // the run that took the request, once taken
	for {
		if res, ok, err := answered(); ok || err != nil {
			return res, err
		}
		id, running := "", true
		if o.Run != nil {
			id, running = o.Run()
		}
		p, pending := Pending(dir)
		// Another request waits where this one was, and this one was
		// never seen taken: another ambr upgrade replaced it.
		replaced := pending && p.Requested != req.Requested && !taken
		switch {
		case !running, !pending && taker != "" && id != taker:
			// It may have answered just before it stopped.
			if res, ok, err := answered(); ok || err != nil {
				return res, err
			}
			if replaced {
				return Result{}, ErrSuperseded
			}
			withdraw(dir, req)
			return Result{}, ErrStopped
		case !pending && !taken:
			taker, taken = id, true
		}
		if time.Now().After(deadline) {
			if replaced {
				return Result{}, ErrSuperseded
			}
			if taken {
				return Result{}, ErrUnderWay
			}
			withdraw(dir, req)
			return Result{}, ErrNoAnswer
		}
		if o.Waiting != nil && time.Since(last) > 5*time.Second {
			o.Waiting()
			last = time.Now()
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return Result{}, ctx.Err()
		}
	}
}

// Live is the side of live upgrades inside `ambr run`: it takes requests,
// switches the supervised app to the new build for a trial, and back if
// the new build fails before its converted checkpoint is durable.
type Live struct {
	dir, name string
	c         coordinator
	child     *supervise.Child
	log       *slog.Logger

	// MayTake, if set, says whether this run may take a request now: a
	// replica's run takes one only while it is primary (see Moved).
	MayTake func() bool
	// OnSwitched, if set, is told the build the app runs after an upgrade
	// this run made (for its status).
	OnSwitched func(logfmt.AppBuild)

	mu      sync.Mutex
	current logfmt.AppBuild

	outcome chan error
	exits   chan supervise.AppRun // app starts that ended, for a failed upgrade's message
}

// coordinator is what Live uses of the *engine.Coordinator.
type coordinator interface {
	PrepareUpgrade(logfmt.AppBuild)
	CancelUpgrade() bool
}

// NewLive returns the live-upgrade side of the run of instance name in
// dir. Its OnUpgrade is the coordinator's Options.OnUpgrade and AppExited
// is told how each app start ended; Serve starts it once the coordinator
// and the child exist.
func NewLive(dir, name string) *Live {
	return &Live{dir: dir, name: name, outcome: make(chan error, 1), exits: make(chan supervise.AppRun, 8)}
}

// AppExited is told how each app start ended (from the supervisor's
// OnExit), so that a failed upgrade can say what the new build said.
func (u *Live) AppExited(run supervise.AppRun) {
	select {
	case u.exits <- run:
	default: // no upgrade is listening
	}
}

// OnUpgrade is the coordinator's Options.OnUpgrade.
func (u *Live) OnUpgrade(err error) {
	select {
	case u.outcome <- err:
	default:
	}
}

// lastWords is what an ended app start said last: its panic, else its last
// stderr line.
func lastWords(run supervise.AppRun) string {
	word := run.Panic
	for i := len(run.Stderr) - 1; i >= 0 && word == ""; i-- {
		word = strings.TrimSpace(run.Stderr[i])
	}
	return word
}

// Serve serves upgrade requests until ctx ends. Call it before the child
// runs: a request waiting from before the start (an upgrade of a stopped
// instance) is begun at once, so the first app start already is the new
// build. It returns at once; the requests are served in the background.
func (u *Live) Serve(ctx context.Context, c *engine.Coordinator, child *supervise.Child, log *slog.Logger, current logfmt.AppBuild) {
	u.c, u.child, u.log = c, child, log
	u.setCurrent(current)
	var first *Request
	if req, res, ok := u.take(); ok {
		if res != nil {
			u.answer(*res)
		} else {
			u.log.Info("upgrade asked for while stopped: starting the new build", "to", req.Build.Source)
			u.begin(*req)
			first = req
		}
	}
	go func() {
		if first != nil {
			u.answer(u.finish(ctx, *first, u.build()))
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			req, res, ok := u.take()
			if !ok {
				continue
			}
			if res == nil {
				old := u.build()
				u.begin(*req)
				r := u.finish(ctx, *req, old)
				res = &r
			}
			u.answer(*res)
		}
	}()
}

// Moved tells a replica's Live that its app now runs build: the instance
// was upgraded by another replica, its primary (engine.Options.OnBuildMoved).
//
// With replicas, the upgrade is taken by the primary's run (MayTake): its
// app switches to the new build, which recovers from the newest checkpoint
// as the primary, converts and checkpoints, exactly as a single instance
// does; meanwhile the standbys and the checkpointer hold before the
// upgrade's records, and once the version moved they switch their apps to
// the new build, which recovers from the converted checkpoint. A failed
// upgrade brings the primary's old build back; the followers never left
// it. If the primary's run dies during the upgrade, a standby takes over
// on the old build (or, if the version had moved, on the new one).
func (u *Live) Moved(build logfmt.AppBuild) {
	build.Args = u.build().Args
	u.setCurrent(build)
}

func (u *Live) build() logfmt.AppBuild {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.current
}

func (u *Live) setCurrent(b logfmt.AppBuild) {
	u.mu.Lock()
	u.current = b
	u.mu.Unlock()
}

// take takes the waiting request, if any: res is set when it is damaged.
func (u *Live) take() (*Request, *Result, bool) {
	if u.MayTake != nil && !u.MayTake() {
		return nil, nil, false
	}
	// Renamed away before it is read: a request another ambr upgrade
	// writes meanwhile stays for the next take, rather than being removed
	// unread.
	taken := filepath.Join(u.dir, RequestFile+".taken")
	if err := os.Rename(filepath.Join(u.dir, RequestFile), taken); err != nil {
		return nil, nil, false
	}
	b, err := os.ReadFile(taken)
	_ = os.Remove(taken)
	if err != nil {
		return nil, nil, false
	}
	var req Request
	if err := json.Unmarshal(b, &req); err != nil || req.Build.Path == "" {
		return nil, &Result{Instance: u.name, Requested: req.Requested,
			Error: "the upgrade request is damaged; ask again with ambr upgrade NAME --to APP"}, true
	}
	return &req, nil, true
}

func (u *Live) answer(res Result) {
	res.Finished = time.Now().UnixNano()
	if m, err := layout.ReadManifest(vfs.Default(), u.dir); err == nil {
		res.Version = m.Version
	}
	if err := writeJSONFile(filepath.Join(u.dir, ResultFile), res); err != nil {
		u.log.Error("could not answer the upgrade request", "error", err)
	}
}

// begin makes the next recovery an upgrade to the new build and switches
// the app to it (killing the running one).
func (u *Live) begin(req Request) {
	req.Build.Args = u.build().Args
	for len(u.outcome) > 0 {
		<-u.outcome
	}
	for len(u.exits) > 0 {
		<-u.exits
	}
	u.log.Info("live upgrade: trying the new build", "to", req.Build.Source, "sha256", short(req.Build.SHA256))
	u.c.PrepareUpgrade(req.Build)
	u.child.Switch(req.Build.Path, true)
}

// connectTimeout is how long finish waits for the new build to connect.
var connectTimeout = 2 * time.Minute

// finish waits for the outcome of the upgrade begun to req: the new build
// stays, or old comes back.
func (u *Live) finish(ctx context.Context, req Request, old logfmt.AppBuild) Result {
	req.Build.Args = old.Args
	res := Result{Instance: u.name, Requested: req.Requested, Build: req.Build}
	var err error
	connect := time.After(connectTimeout)
wait:
	for {
		select {
		case err = <-u.outcome:
		case <-connect:
			if !u.c.CancelUpgrade() {
				// The new build connected and is converting (a large
				// state can take long): its outcome decides, not the
				// clock. Switching back now would kill it mid-upgrade
				// and report that it never connected.
				u.log.Info("live upgrade: the new build connected and is still converting its state; waiting for its checkpoint")
				connect = nil
				continue
			}
			err = fmt.Errorf("the new build did not connect within %v", connectTimeout)
		case <-ctx.Done():
			u.c.CancelUpgrade()
			err = errors.New("ambr run is stopping")
		}
		break wait
	}
	if err == nil {
		u.child.EndTrial()
		u.setCurrent(req.Build)
		if u.OnSwitched != nil {
			u.OnSwitched(req.Build)
		}
		res.OK = true
		return res
	}
	res.Error = err.Error()
	// The new app's last words come with its exit, just after the
	// coordinator saw its connection close: wait for them before switching
	// back (which kills a new app that is still alive).
	wait := time.After(5 * time.Second)
words:
	for {
		select {
		case run := <-u.exits:
			if run.Killed {
				continue // the old app, killed at the switch
			}
			if w := lastWords(run); w != "" {
				res.Error += "; the new build said: " + w
			}
			break words
		case <-wait:
			break words
		}
	}
	u.child.Switch(old.Path, false)
	u.log.Warn("live upgrade failed; the old build runs on", "reason", err)
	return res
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
