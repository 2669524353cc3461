package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/ambr-dev/ambr/bench"
	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/internal/testbin"
	"github.com/ambr-dev/ambr/logfmt"
)

var updateScripts = flag.Bool("update", false, "rewrite testscript expected output in place")

func TestMain(m *testing.M) {
	bench.GiantChild() // `ambr bench giant` run in-process starts this binary again
	testscript.Main(cleanBuilds{m}, map[string]func(){
		"ambr": func() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) },
	})
}

// cleanBuilds removes what internal/testbin built once the tests ran.
type cleanBuilds struct{ m *testing.M }

func (c cleanBuilds) Run() int {
	defer testbin.Clean()
	return c.m.Run()
}

// TestScripts runs testdata/script/*.txtar: ambr as a user types it.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:           "testdata/script",
		UpdateScripts: *updateScripts,
		Setup: func(e *testscript.Env) error {
			e.Setenv("AMBR_HOME", filepath.Join(e.WorkDir, ".ambr"))
			e.Setenv("NO_COLOR", "1")
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"mkinstance": cmdMkInstance,
			"flipbyte":   cmdFlipByte,
			"truncate":   cmdTruncate,
			"exitcode":   cmdExitCode,
		},
	})
}

// exitcode N cmd args... runs cmd and checks that it exits with status N.
func cmdExitCode(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exitcode N command [args...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exitcode: %v", err)
	}
	err = ts.Exec(args[1], args[2:]...)
	got := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		got = ee.ExitCode()
	} else if err != nil {
		ts.Fatalf("exitcode: %v", err)
	}
	if got != want {
		ts.Fatalf("%s exited with %d, want %d", args[1], got, want)
	}
}

// fixtureTime is the logged time of record 1 in fixtures; record n is n
// seconds later.
var fixtureTime = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

// mkinstance DIR SEGMENTS RECORDS_PER_SEGMENT writes an instance directory
// with logfmt's writers: a MANIFEST, and per segment n a checkpoint chkpt-n
// and a log-n. Record k holds one fork from "client" whose arguments are
// {"n":k}. Checkpoint n's state is {"count":K} with K the records before it.
func cmdMkInstance(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: mkinstance DIR SEGMENTS RECORDS_PER_SEGMENT")
	}
	dir := ts.MkAbs(args[0])
	segs, _ := strconv.Atoi(args[1])
	per, _ := strconv.Atoi(args[2])
	if err := writeFixtureInstance(dir, segs, per); err != nil {
		ts.Fatalf("mkinstance: %v", err)
	}
}

func writeFixtureInstance(dir string, segs, per int) error {
	logDir := filepath.Join(dir, layout.VersionDir(0))
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return err
	}
	seq := int64(1)
	var digest uint64
	var outCount uint64
	for n := 1; n <= segs; n++ {
		ck := &logfmt.Checkpoint{Number: uint64(n), NextSeq: seq, Time: fixtureTime.Add(time.Duration(seq-1) * time.Second).UnixNano(),
			OutCount: outCount, OutDigest: digest,
			Inputs: []logfmt.Watermark{{Peer: "client", Seq: seq - 1}},
			State:  fmt.Appendf(nil, `{"count":%d}`, seq-1)}
		f, err := os.Create(filepath.Join(logDir, layout.CheckpointName(uint64(n))))
		if err != nil {
			return err
		}
		if err := logfmt.WriteCheckpoint(f, ck); err != nil {
			return err
		}
		f.Close()
		f, err = os.Create(filepath.Join(logDir, layout.SegmentName(uint64(n))))
		if err != nil {
			return err
		}
		w, err := logfmt.NewSegmentWriter(f, uint32(n))
		if err != nil {
			return err
		}
		for i := 0; i < per; i++ {
			msg := logfmt.AppendRPC(nil, logfmt.RPC{MethodID: 1, Kind: logfmt.RPCFork, Args: fmt.Appendf(nil, `{"n":%d}`, seq)})
			rec := &logfmt.Record{Seq: seq, Time: fixtureTime.Add(time.Duration(seq) * time.Second).UnixNano(),
				OutCount: outCount, OutDigest: digest,
				Sources: []logfmt.Source{{Peer: "client", FirstSeq: seq, Count: 1}}, Messages: msg, MessageCount: 1}
			if err := w.Append(rec); err != nil {
				return err
			}
			// The app answers each fork with one message to the client.
			digest = logfmt.ChainDigest(digest, []byte("client"), []byte{0, 2, 1})
			outCount++
			seq++
		}
		f.Close()
	}
	m := &logfmt.Manifest{Instance: filepath.Base(dir), CommitterID: 7, Checkpoint: uint64(segs), FirstSegment: 1,
		App: logfmt.AppBuild{Source: "./samples/fixture"}, Created: fixtureTime.UnixNano(), Updated: fixtureTime.UnixNano()}
	b, err := logfmt.EncodeManifest(m)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, layout.ManifestFile), b, 0o644)
}

// flipbyte FILE OFFSET flips the low bit of the byte at OFFSET (negative:
// from the end).
func cmdFlipByte(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: flipbyte FILE OFFSET")
	}
	path := ts.MkAbs(args[0])
	b, err := os.ReadFile(path)
	ts.Check(err)
	off, err := strconv.Atoi(args[1])
	ts.Check(err)
	if off < 0 {
		off += len(b)
	}
	b[off] ^= 1
	ts.Check(os.WriteFile(path, b, 0o644))
}

// truncate FILE -N cuts N bytes from the end of FILE.
func cmdTruncate(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: truncate FILE -N")
	}
	path := ts.MkAbs(args[0])
	fi, err := os.Stat(path)
	ts.Check(err)
	n, err := strconv.Atoi(args[1])
	ts.Check(err)
	if n >= 0 {
		ts.Fatalf("truncate: give a negative count of bytes to cut")
	}
	ts.Check(os.Truncate(path, fi.Size()+int64(n)))
}
