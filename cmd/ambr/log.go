package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"github.com/spf13/cobra"

	"github.com/ambr-dev/ambr/engine/immortal"
	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/engine/vfs"
	"github.com/ambr-dev/ambr/logfmt"
	"github.com/ambr-dev/ambr/logfmt/logview"
	"github.com/ambr-dev/ambr/timetravel"
)

func vfsDefault() vfs.FS { return vfs.Default() }

type logOptions struct {
	from, until string
	json        bool
	follow      bool
	maxArgs     int
}

func newLogCmd(g *globals) *cobra.Command {
	var o logOptions
	cmd := &cobra.Command{
		Use:   "log NAME|DIR",
		Short: "Print an instance's log records, decoded",
		Long: `Print the records of an instance's log, decoded: sequence number, logged time,
where the record lies (segment and offset), the output digest, and each message
with its sender, kind, method and arguments. Checkpoint markers show where each
checkpoint's state begins.

NAME is an instance under the home; DIR is the path of an instance directory
(a copy from another machine, say). The instance need not be running, and a
running one is read safely.

--from and --until take points: 1234 or seq:1234, an RFC 3339 time (the last
record logged at or before it), checkpoint:K+N, or end.

Where the history moves to another build (an upgrade, a new build of the
app), a marker names the build that ran the records from there: its place in
the MANIFEST's builds, the app version it ran as, what it was built from, its
hash, and the checkpoint it started from.

--json prints one JSON object per line per record:
  {"seq":12,"time":"…","segment":1,"offset":4096,"size":83,"out_count":11,
   "out_digest":"…","messages":[{"type":"RPC","from":"client","from_seq":6,
   "kind":"call","method":3,"size":21,"args":"…"}],
   "build":{"n":1,"version":0,"source":"…","sha256":"…"}}
args is text when printable, else args_hex holds hex; build is the build
that ran the record (absent when the MANIFEST records none).

Exit codes: 0 printed; 1 the log is damaged (the line names the file, the
offset and what is wrong); 2 no such instance or bad flags.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runLog(g, args[0], o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.from, "from", "", "first record to print (point P)")
	f.StringVar(&o.until, "until", "", "last record to print (point P)")
	f.BoolVar(&o.json, "json", false, "print JSON lines, one record each")
	f.BoolVarP(&o.follow, "follow", "f", false, "keep printing records as they are logged (Ctrl-C stops)")
	f.IntVar(&o.maxArgs, "max-args", 96, "characters of arguments shown per message in text output (0: all)")
	return cmd
}

// resolvePoint turns a point into a sequence number of in's log.
func resolvePoint(in *layout.Instance, s string) (int64, error) {
	p, err := timetravel.ParsePoint(s)
	if err != nil {
		return 0, usageErrorf("%v", err)
	}
	seq, err := timetravel.Resolve(in, p)
	if err != nil {
		if errors.Is(err, timetravel.ErrBadPoint) {
			return 0, usageErrorf("%v", err)
		}
		return 0, problemErrorf("%v", err)
	}
	return seq, nil
}

func runLog(g *globals, name string, o logOptions) error {
	in, err := openInstance(g, name)
	if err != nil {
		return err
	}
	from, until := int64(1), int64(1<<62)
	if o.from != "" {
		if from, err = resolvePoint(in, o.from); err != nil {
			return err
		}
	}
	if o.until != "" {
		if until, err = resolvePoint(in, o.until); err != nil {
			return err
		}
	}
	if from > until {
		return usageErrorf("--from %s (record %d) is after --until %s (record %d)", o.from, from, o.until, until)
	}
	// Checkpoint markers: which checkpoint's state begins before which record.
	markers := map[int64][]uint64{}
	if !o.json {
		nums, _ := in.Checkpoints()
		for _, n := range nums {
			if c, err := in.ReadCheckpoint(n); err == nil {
				markers[c.NextSeq] = append(markers[c.NextSeq], n)
			}
		}
		fmt.Fprintf(g.stdout, "instance %s (%s), app version %d, newest checkpoint %d\n", in.Manifest.Instance, in.Dir, in.Manifest.Version, in.Manifest.Checkpoint)
	}
	// Which build ran which records (the MANIFEST's builds): a marker where
	// each begins, and each JSON record names its build.
	builds := timetravel.Builds(in)
	starts := map[int64]*timetravel.BuildRange{}
	for i := range builds {
		starts[builds[i].First] = &builds[i]
	}
	var cur, shown *timetravel.BuildRange
	enc := json.NewEncoder(g.stdout)
	var lastSeq int64
	printed := 0
	emit := func(rec *logfmt.Record, seg uint64, off int64) error {
		lastSeq = rec.Seq
		cur = timetravel.RangeFor(builds, rec.Seq)
		if rec.Seq < from || rec.Seq > until {
			return nil
		}
		if cur != shown && cur != nil && !o.json && len(builds) > 1 {
			fmt.Fprintf(g.stdout, "── %s ──\n", describeBuild(cur))
		}
		shown = cur
		printed++
		v := logview.ViewEnvelopes(rec, seg, off, immortal.ViewEnvelope)
		if o.json {
			return enc.Encode(loggedRecord{RecordView: v, Build: recordBuild(cur)})
		}
		for _, n := range markers[rec.Seq] {
			fmt.Fprintf(g.stdout, "── checkpoint %d: state before #%d ──\n", n, rec.Seq)
		}
		return v.WriteText(g.stdout, o.maxArgs)
	}
	lr, err := in.NewLogReader(0)
	if err != nil {
		return problemErrorf("%v", err)
	}
	defer lr.Close()
	err = drain(lr, until, emit)
	for _, note := range lr.Notes() {
		fmt.Fprintf(g.stderr, "note: %s\n", note)
	}
	if err != nil {
		return problemErrorf("%v", err)
	}
	if !o.follow {
		if t := lr.TornTail(); t != nil {
			fmt.Fprintf(g.stderr, "note: the log ends in an incomplete record: %v (an interrupted or ongoing write; nothing acknowledged is lost, and recovery truncates it)\n", t)
		}
		if !o.json && printed == 0 {
			fmt.Fprintf(g.stdout, "no records in the range asked for (the log's last record is #%d)\n", lastSeq)
		}
		return nil
	}
	return follow(g, in, lastSeq, until, emit)
}

// loggedRecord is a record as `ambr log --json` prints it: the decoded
// record and the build that ran it.
type loggedRecord struct {
	logview.RecordView
	Build *buildRef `json:"build,omitempty"`
}

// buildRef names a build of the MANIFEST's list (N from 1).
type buildRef struct {
	N       int    `json:"n"`
	Version uint32 `json:"version"`
	Source  string `json:"source,omitempty"`
	SHA256  string `json:"sha256,omitempty"`
}

func recordBuild(b *timetravel.BuildRange) *buildRef {
	if b == nil {
		return nil
	}
	return &buildRef{N: b.N, Version: b.Version, Source: b.Source, SHA256: b.SHA256}
}

// describeBuild is the marker line of a build's range.
func describeBuild(b *timetravel.BuildRange) string {
	what := fmt.Sprintf("build %d (version %d): %s, sha256 %s", b.N, b.Version, b.Source, shortHash(b.SHA256))
	if b.First > 1 {
		what += fmt.Sprintf(", from #%d (checkpoint %d)", b.First, b.Checkpoint)
	}
	if b.Exe == "" {
		what += "; its binary is no longer kept"
	}
	return what
}

// drain reads records until the end of the log or past until.
func drain(lr *layout.LogReader, until int64, emit func(*logfmt.Record, uint64, int64) error) error {
	for {
		rec, err := lr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		seg, off := lr.Position()
		if err := emit(rec, seg, off); err != nil {
			return err
		}
		if rec.Seq >= until {
			return nil
		}
	}
}

// follow polls the log for records after last until interrupted. Polling
// keeps the reader independent of the writer: it works on copies, on
// network filesystems and across processes.
func follow(g *globals, in *layout.Instance, last, until int64, emit func(*logfmt.Record, uint64, int64) error) error {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt)
	defer signal.Stop(stop)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for last < until {
		select {
		case <-stop:
			return nil
		case <-tick.C:
		}
		lr, err := in.NewLogReader(0)
		if err != nil {
			return problemErrorf("%v", err)
		}
		err = drain(lr, until, func(rec *logfmt.Record, seg uint64, off int64) error {
			if rec.Seq <= last {
				return nil
			}
			last = rec.Seq
			return emit(rec, seg, off)
		})
		lr.Close()
		if err != nil && !errors.Is(err, io.EOF) {
			return problemErrorf("%v", err)
		}
	}
	return nil
}
