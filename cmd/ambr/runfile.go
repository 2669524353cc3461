package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/charmbracelet/lipgloss"
	"go.yaml.in/yaml/v3"

	"github.com/ambr-dev/ambr/engine/ambrosia"
)

// minSegmentSize is the smallest --segment-size accepted: below it every
// few records would roll a segment and take a checkpoint.
const minSegmentSize = 4096

// validate checks the flags of `ambr run` that runImmortal does not, before
// anything starts.
func (o *runOptions) validate() error {
	if o.segmentSize < minSegmentSize {
		return usageErrorf("--segment-size %d: give at least %d bytes (default %d); each segment ends with a checkpoint", o.segmentSize, minSegmentSize, int64(64<<20))
	}
	if o.ports != "" {
		if _, _, err := parsePorts(o.ports); err != nil {
			return usageErrorf("--ports %q: %v", o.ports, err)
		}
	}
	if o.ambrosiaReg && os.Getenv(ambrosia.EnvConnString) == "" {
		return usageErrorf("--ambrosia-registration: %s is not set: set it to the connection string of the Azure Storage account AMBROSIA's bindings read their registration from", ambrosia.EnvConnString)
	}
	return nil
}

// parsePorts parses RECV,SEND: two different TCP port numbers.
func parsePorts(s string) (recv, send int, err error) {
	parts := strings.Split(s, ",")
	if len(parts) != 2 {
		return 0, 0, errors.New("give RECV,SEND, two port numbers like 2500,2501")
	}
	var ports [2]int
	for i, p := range parts {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 1 || n > 65535 {
			return 0, 0, fmt.Errorf("%q is not a port number (1-65535); give RECV,SEND like 2500,2501", p)
		}
		ports[i] = n
	}
	if ports[0] == ports[1] {
		return 0, 0, errors.New("the receive and send ports must differ")
	}
	return ports[0], ports[1], nil
}

// runFile is the format of `ambr run -f FILE`.
type runFile struct {
	Immortals []runFileImmortal `yaml:"immortals"`
}

type runFileImmortal struct {
	Name     string   `yaml:"name"`
	App      string   `yaml:"app"`
	Args     []string `yaml:"args"`
	Replicas int      `yaml:"replicas"`
	// Checkpointer makes the last of the replicas the checkpointer.
	Checkpointer bool   `yaml:"checkpointer"`
	Ports        string `yaml:"ports"`
}

// loadRunFile reads and checks FILE. Relative app paths are relative to
// the file's directory.
func loadRunFile(path string) ([]runFileImmortal, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, usageErrorf("-f: %v", err)
	}
	var f runFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, usageErrorf("%s: %v (the format: immortals: [{name, app, args: [...], replicas, checkpointer, ports}]; see 'ambr run --help')", path, err)
	}
	if len(f.Immortals) == 0 {
		return nil, usageErrorf("%s lists no immortals (give immortals: [{name: server, app: ./server}, ...])", path)
	}
	base := filepath.Dir(path)
	seen := map[string]int{}
	for i := range f.Immortals {
		im := &f.Immortals[i]
		where := fmt.Sprintf("%s: immortal %d", path, i+1)
		if im.App == "" {
			return nil, usageErrorf("%s has no app (a Go package path or an executable)", where)
		}
		if im.Name == "" {
			im.Name = defaultName(im.App)
		}
		where = fmt.Sprintf("%s: immortal %q", path, im.Name)
		if !validName.MatchString(im.Name) {
			return nil, usageErrorf("%s: use letters, digits, '.', '_' and '-' in names", where)
		}
		if j, dup := seen[im.Name]; dup {
			return nil, usageErrorf("%s: immortals %d and %d have the same name; give each its own name", where, j+1, i+1)
		}
		seen[im.Name] = i
		switch {
		case im.Replicas < 0:
			return nil, usageErrorf("%s: replicas %d: give 1 (or leave it out), or 2 or more for active/active replicas", where, im.Replicas)
		case im.Checkpointer && im.Replicas < 2:
			return nil, usageErrorf("%s: checkpointer: give replicas: 2 or more (the last one is the checkpointer, the others primary and standbys)", where)
		case im.Replicas > 1 && im.Ports != "":
			return nil, usageErrorf("%s: ports: replicas cannot share fixed app ports; leave ports out (free ones)", where)
		}
		if im.Ports != "" {
			if _, _, err := parsePorts(im.Ports); err != nil {
				return nil, usageErrorf("%s: ports %q: %v", where, im.Ports, err)
			}
		}
		if strings.HasPrefix(im.App, "./") || strings.HasPrefix(im.App, "../") {
			im.App = relativeToHere(filepath.Join(base, im.App))
		}
	}
	return f.Immortals, nil
}

// relativeToHere writes path relative to the working directory, as a
// package path (./x or ../x), so the MANIFEST records what a user would
// type; absolute if that is not possible.
func relativeToHere(path string) string {
	wd, err := os.Getwd()
	if err != nil {
		return path
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return path
	}
	rel, err := filepath.Rel(wd, abs)
	if err != nil {
		return abs
	}
	if !strings.HasPrefix(rel, "..") {
		rel = "." + string(filepath.Separator) + rel
	}
	return rel
}

// runImmortals runs every immortal of FILE as `ambr run` runs one, in this
// process, with each one's output (app and coordinator) prefixed by its
// name. Ctrl-C stops all of them cleanly; when one stops on an error, the
// others are stopped too and the error is returned.
func runImmortals(parent context.Context, g *globals, path string, args []string, o runOptions) error {
	if len(args) > 0 {
		return usageErrorf("give either APP or -f FILE, not both (extra arguments: %s)", strings.Join(args, " "))
	}
	if o.name != "" || o.ports != "" || o.externalApp || o.replica >= 0 || o.checkpointer {
		return usageErrorf("--name, --ports, --external-app, --replica and --checkpointer are per immortal: with -f, set name, ports, replicas and checkpointer in %s", path)
	}
	immortals, err := loadRunFile(path)
	if err != nil {
		return err
	}
	// Each replica runs as `ambr run --replica N` would, labelled NAME/N.
	type run struct {
		im           runFileImmortal
		label        string
		replica      int
		checkpointer bool
	}
	var runs []run
	for _, im := range immortals {
		if im.Replicas < 2 {
			runs = append(runs, run{im: im, label: im.Name, replica: -1})
			continue
		}
		for n := 0; n < im.Replicas; n++ {
			runs = append(runs, run{im: im, label: fmt.Sprintf("%s/%d", im.Name, n), replica: n, checkpointer: im.Checkpointer && n == im.Replicas-1})
		}
	}
	if _, port, err := net.SplitHostPort(o.peerAddr); err == nil && port != "0" && len(immortals) > 1 {
		return usageErrorf("--peer-addr %s: with -f, several coordinators cannot share one fixed port; give HOST:0 (a free port each)", o.peerAddr)
	}
	if parent == nil {
		parent = context.Background()
	}
	ctx, stopAll := context.WithCancel(parent)
	defer stopAll()

	width := 0
	for _, r := range runs {
		width = max(width, len(r.label))
	}
	var outMu sync.Mutex
	r := lipgloss.NewRenderer(g.stdout)
	palette := []lipgloss.Color{"6", "3", "5", "2", "4", "1"}
	errs := make([]error, len(runs))
	var wg sync.WaitGroup
	for i, run := range runs {
		im := run.im
		label := r.NewStyle().Foreground(palette[i%len(palette)]).Render(fmt.Sprintf("%-*s |", width, run.label)) + " "
		out := &prefixWriter{mu: &outMu, w: g.stdout, prefix: label}
		errOut := &prefixWriter{mu: &outMu, w: g.stderr, prefix: label}
		gi := *g // this immortal's output goes through its prefix
		gi.stdout, gi.stderr = out, errOut
		oi := o
		oi.name, oi.ports = im.Name, im.Ports
		oi.replica, oi.checkpointer = run.replica, run.checkpointer
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer out.Flush()
			defer errOut.Flush()
			errs[i] = runImmortal(ctx, &gi, im.App, im.Args, oi)
			if errs[i] != nil {
				fmt.Fprintf(errOut, "stopped: %v\n", errs[i])
				stopAll()
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			var ee *exitError
			if errors.As(err, &ee) {
				return &exitError{code: ee.code, err: fmt.Errorf("%s: %w", runs[i].label, ee.err)}
			}
			return fmt.Errorf("%s: %w", runs[i].label, err)
		}
	}
	return nil
}

// prefixWriter writes whole lines to w, each after prefix, under a mutex
// shared by the writers of one terminal, so lines of several immortals
// never interleave mid-line. A partial line waits for its end (or Flush).
type prefixWriter struct {
	mu     *sync.Mutex
	w      io.Writer
	prefix string
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		if _, err := io.WriteString(p.w, p.prefix+string(p.buf[:i+1])); err != nil {
			return len(b), err
		}
		p.buf = p.buf[i+1:]
	}
	return len(b), nil
}

// Flush writes what is left of a last, unfinished line.
func (p *prefixWriter) Flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.buf) > 0 {
		io.WriteString(p.w, p.prefix+string(p.buf)+"\n")
		p.buf = nil
	}
}
