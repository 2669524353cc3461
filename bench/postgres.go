package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ErrNoPostgres says PostgreSQL's server programs were not found.
var ErrNoPostgres = errors.New("PostgreSQL not found: install the server (Debian/Ubuntu: apt-get install postgresql; it puts initdb and pg_ctl in /usr/lib/postgresql/<version>/bin) or name their directory with --pg-bin")

// findPostgres returns the directory holding initdb, pg_ctl and postgres:
// bin if given, else from PATH, else the newest /usr/lib/postgresql/*/bin.
func findPostgres(bin string) (string, error) {
	has := func(dir string) bool {
		for _, p := range []string{"initdb", "pg_ctl", "postgres"} {
			if fi, err := os.Stat(filepath.Join(dir, p)); err != nil || fi.IsDir() {
				return false
			}
		}
		return true
	}
	if bin != "" {
		if has(bin) {
			return bin, nil
		}
		return "", fmt.Errorf("%s has no initdb, pg_ctl and postgres: %w", bin, ErrNoPostgres)
	}
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if r, err := filepath.EvalSymlinks(p); err == nil && has(filepath.Dir(r)) {
			return filepath.Dir(r), nil
		}
		if has(filepath.Dir(p)) {
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgVersionOf(dirs[i]) > pgVersionOf(dirs[j]) })
	for _, d := range dirs {
		if has(d) {
			return d, nil
		}
	}
	return "", ErrNoPostgres
}

func pgVersionOf(binDir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	return v
}

// pgServer is a throw-away PostgreSQL cluster.
type pgServer struct {
	bin, dir, data string
	port           int
	as             []string // command prefix running as the postgres user; nil: as ourselves
	Version        string
	Note           string
}

// startPostgres creates a cluster in a new directory under parent and
// starts it on a free loopback port, with fsync and synchronous commit on.
// PostgreSQL refuses to run as root: then its programs run as the postgres
// user (runuser or setpriv), and a directory that user cannot reach falls
// back to one under the system's temp dir.
func startPostgres(ctx context.Context, bin, parent string) (*pgServer, error) {
	p := &pgServer{bin: bin}
	var uid, gid int
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root, and PostgreSQL refuses to run as root: no postgres user to run it as (%v); run the bench as another user", err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		switch {
		case lookPath("runuser"):
			p.as = []string{"runuser", "-u", "postgres", "--"}
		case lookPath("setpriv"):
			p.as = []string{"setpriv", "--reuid=" + u.Uid, "--regid=" + u.Gid, "--init-groups", "--"}
		default:
			return nil, errors.New("running as root: need runuser or setpriv to run PostgreSQL as the postgres user")
		}
	}
	mk := func(parent string) error {
		d, err := os.MkdirTemp(parent, "pg-")
		if err != nil {
			return err
		}
		p.dir = d
		if p.as != nil {
			if err := os.Chown(d, uid, gid); err != nil {
				return err
			}
			if _, err := p.run(ctx, "test", "-w", d); err != nil {
				os.RemoveAll(d)
				return fmt.Errorf("the postgres user cannot write %s", d)
			}
		}
		return nil
	}
	if err := mk(parent); err != nil {
		if p.as == nil {
			return nil, err
		}
		if err2 := mk(""); err2 != nil {
			return nil, fmt.Errorf("%v; %v", err, err2)
		}
		p.Note = fmt.Sprintf("PostgreSQL's data is under %s: %v", filepath.Dir(p.dir), err)
	}
	p.data = filepath.Join(p.dir, "data")
	if out, err := p.run(ctx, filepath.Join(bin, "initdb"), "-D", p.data, "-U", "bench", "-A", "trust", "-E", "UTF8", "--locale=C", "-N"); err != nil {
		p.cleanup()
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	port, err := freePort()
	if err != nil {
		p.cleanup()
		return nil, err
	}
	p.port = port
	opts := fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -k %s -c fsync=on -c synchronous_commit=on -c full_page_writes=on -c max_connections=200 -c shared_buffers=128MB", port, p.dir)
	if out, err := p.run(ctx, filepath.Join(bin, "pg_ctl"), "-D", p.data, "-l", filepath.Join(p.dir, "postgres.log"), "-w", "-t", "120", "-o", opts, "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(p.dir, "postgres.log"))
		p.cleanup()
		return nil, fmt.Errorf("pg_ctl start: %v\n%s%s", err, out, log)
	}
	if out, err := p.run(ctx, filepath.Join(bin, "postgres"), "--version"); err == nil {
		p.Version = strings.TrimSpace(string(out))
	}
	return p, nil
}

func lookPath(name string) bool { _, err := exec.LookPath(name); return err == nil }

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (p *pgServer) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	argv := append(append([]string(nil), p.as...), append([]string{name}, args...)...)
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = "/"
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}

// URL is the connection string.
func (p *pgServer) URL() string {
	return fmt.Sprintf("postgres://bench@127.0.0.1:%d/postgres?sslmode=disable", p.port)
}

// stop stops the server and removes its directory.
func (p *pgServer) stop() {
	_, _ = p.run(context.Background(), filepath.Join(p.bin, "pg_ctl"), "-D", p.data, "-m", "fast", "-w", "stop")
	p.cleanup()
}

func (p *pgServer) cleanup() {
	if p.dir != "" {
		os.RemoveAll(p.dir)
	}
}
