// Package etcdreg is the coordinator registry on etcd, for immortals
// across hosts: each coordinator registers its peer address under
// /ambr/instances/NAME, bound to a lease that its coordinator keeps alive, so
// an entry of a coordinator that died goes away by itself; lookups are
// served from a cache that one watch keeps current (no polling).
//
//	key:   <prefix>/instances/<name>
//	value: {"addr": "HOST:PORT", "pid": 1234, "host": "…", "updated": unix-ns}
//
// The file registry (engine.FileRegistry) stays the default; this one is
// chosen with `ambr run --registry etcd://HOST:PORT[,HOST:PORT…]`.
package etcdreg

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/ambr-dev/ambr/engine"
)

// DefaultPrefix is where ambr keeps its keys in etcd.
const DefaultPrefix = "/ambr"

// Timeouts of the registry's calls.
const (
	// DialTimeout bounds the first contact with etcd.
	DialTimeout = 3 * time.Second
	// CallTimeout bounds each registry call.
	CallTimeout = 3 * time.Second
	// EntryTTL is the lease of a registration, in seconds: a coordinator
	// that stops keeping it alive is gone from the registry this long after.
	EntryTTL = 5
)

// IsURL reports whether a --registry value names etcd.
func IsURL(s string) bool { return strings.HasPrefix(s, "etcd://") }

// ParseURL returns the endpoints of etcd://HOST:PORT[,HOST:PORT…].
func ParseURL(s string) ([]string, error) {
	rest, ok := strings.CutPrefix(s, "etcd://")
	if !ok || rest == "" {
		return nil, fmt.Errorf("%q is not etcd://HOST:PORT[,HOST:PORT…]", s)
	}
	var eps []string
	for _, hp := range strings.Split(strings.TrimRight(rest, "/"), ",") {
		u, err := url.Parse("http://" + hp)
		if err != nil || u.Host == "" || u.Port() == "" || u.Path != "" {
			return nil, fmt.Errorf("%q in %q is not HOST:PORT", hp, s)
		}
		eps = append(eps, "http://"+u.Host)
	}
	return eps, nil
}

// Registry is an engine.Registry on etcd.
type Registry struct {
	cli    *clientv3.Client
	prefix string
	ctx    context.Context // until Close
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	cache   map[string]string // name → addr, kept by the watch
	synced  bool              // the cache reflects etcd (the watch is up)
	leases  map[string]clientv3.LeaseID
	keepers map[string]context.CancelFunc // stop re-registering name
}

// Entry is one registered instance.
type Entry struct {
	Name    string `json:"name"`
	Addr    string `json:"addr"`
	PID     int    `json:"pid"`
	Host    string `json:"host"`
	Updated int64  `json:"updated"`
	// Replicas are the replicas campaigning for the instance in etcd, the
	// primary first (none for an instance without replicas).
	Replicas []ReplicaEntry `json:"replicas,omitempty"`
}

// ReplicaEntry is one replica in an instance's election.
type ReplicaEntry struct {
	Replica int    `json:"replica"`
	Role    string `json:"role"` // primary or standby
	// Epoch is the primary's epoch (its key's create revision).
	Epoch uint64 `json:"epoch,omitempty"`
}

var _ engine.Registry = (*Registry)(nil)

// Open connects to etcd at endpoints and starts watching the registry. It
// fails with a clear error when etcd cannot be reached.
func Open(endpoints []string) (*Registry, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: DialTimeout, Logger: zap.NewNop(),
		// Reconnect to a restarted etcd within a second, not gRPC's
		// default of up to two minutes.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: time.Second,
		})}})
	if err != nil {
		return nil, fmt.Errorf("etcd at %s: %w", strings.Join(endpoints, ","), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), DialTimeout)
	_, err = cli.Get(ctx, "ambr-probe", clientv3.WithCountOnly())
	cancel()
	if err != nil {
		cli.Close()
		return nil, fmt.Errorf("etcd at %s does not answer (%v): start it, or check the address in --registry", strings.Join(endpoints, ","), err)
	}
	wctx, wcancel := context.WithCancel(context.Background())
	r := &Registry{cli: cli, prefix: DefaultPrefix, ctx: wctx, cancel: wcancel, done: make(chan struct{}), cache: map[string]string{},
		leases: map[string]clientv3.LeaseID{}, keepers: map[string]context.CancelFunc{}}
	go r.watch(wctx)
	return r, nil
}

// Close stops the watch and the leases' keep-alives and disconnects. The
// registrations then expire after EntryTTL unless Unregister removed them.
func (r *Registry) Close() error {
	r.cancel()
	<-r.done
	return r.cli.Close()
}

func (r *Registry) key(name string) string { return r.prefix + "/instances/" + name }

// watch keeps the cache: a Get of everything, then a watch from the
// revision after it; when the watch breaks (etcd restarted, compaction),
// it starts over.
func (r *Registry) watch(ctx context.Context) {
	defer close(r.done)
	pfx := r.prefix + "/instances/"
	for ctx.Err() == nil {
		gctx, cancel := context.WithTimeout(ctx, CallTimeout)
		resp, err := r.cli.Get(gctx, pfx, clientv3.WithPrefix())
		cancel()
		if err != nil {
			r.mu.Lock()
			r.synced = false
			r.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		fresh := map[string]string{}
		for _, kv := range resp.Kvs {
			if e, ok := decode(kv.Value); ok {
				fresh[strings.TrimPrefix(string(kv.Key), pfx)] = e.Addr
			}
		}
		r.mu.Lock()
		r.cache, r.synced = fresh, true
		r.mu.Unlock()
		wch := r.cli.Watch(clientv3.WithRequireLeader(ctx), pfx, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
		for wr := range wch {
			if wr.Err() != nil {
				break
			}
			r.mu.Lock()
			for _, ev := range wr.Events {
				name := strings.TrimPrefix(string(ev.Kv.Key), pfx)
				if ev.Type == clientv3.EventTypeDelete {
					delete(r.cache, name)
				} else if e, ok := decode(ev.Kv.Value); ok {
					r.cache[name] = e.Addr
				}
			}
			r.mu.Unlock()
		}
		r.mu.Lock()
		r.synced = false
		r.mu.Unlock()
	}
}

func decode(b []byte) (Entry, bool) {
	var e Entry
	if json.Unmarshal(b, &e) != nil || e.Addr == "" {
		return Entry{}, false
	}
	return e, true
}

// Register implements engine.Registry: name's entry, under a lease kept
// alive until Unregister or Close. If the lease is lost (etcd was away past
// its TTL), the entry is put again under a new one as soon as etcd answers.
func (r *Registry) Register(name, addr string) error {
	host, _ := os.Hostname()
	b, _ := json.Marshal(Entry{Name: name, Addr: addr, PID: os.Getpid(), Host: host, Updated: time.Now().UnixNano()})
	r.mu.Lock()
	if stop := r.keepers[name]; stop != nil {
		stop()
	}
	ctx, stop := context.WithCancel(r.ctx)
	r.keepers[name] = stop
	r.mu.Unlock()
	ka, err := r.put(ctx, name, b)
	if err != nil {
		stop()
		return err
	}
	r.mu.Lock()
	r.cache[name] = addr
	r.mu.Unlock()
	go func() {
		for {
			for range ka {
			}
			// The keep-alive ended: the registry closed, Unregister, or the
			// lease is gone.
			for ctx.Err() == nil {
				if ka, err = r.put(ctx, name, b); err == nil {
					break
				}
				select {
				case <-ctx.Done():
				case <-time.After(200 * time.Millisecond):
				}
			}
			if ctx.Err() != nil {
				return
			}
		}
	}()
	return nil
}

// put writes name's entry under a new lease and starts its keep-alive.
func (r *Registry) put(ctx context.Context, name string, value []byte) (<-chan *clientv3.LeaseKeepAliveResponse, error) {
	cctx, cancel := context.WithTimeout(ctx, CallTimeout)
	defer cancel()
	l, err := r.cli.Grant(cctx, EntryTTL)
	if err != nil {
		return nil, fmt.Errorf("registry (etcd): lease for %s: %w", name, err)
	}
	if _, err := r.cli.Put(cctx, r.key(name), string(value), clientv3.WithLease(l.ID)); err != nil {
		return nil, fmt.Errorf("registry (etcd): register %s: %w", name, err)
	}
	ka, err := r.cli.KeepAlive(ctx, l.ID)
	if err != nil {
		return nil, fmt.Errorf("registry (etcd): keep-alive for %s: %w", name, err)
	}
	r.mu.Lock()
	r.leases[name] = l.ID
	r.mu.Unlock()
	return ka, nil
}

// Lookup implements engine.Registry, from the watched cache; while the
// watch is down (etcd unreachable), from etcd directly.
func (r *Registry) Lookup(name string) (string, error) {
	r.mu.Lock()
	addr, ok := r.cache[name]
	synced := r.synced
	r.mu.Unlock()
	if ok {
		return addr, nil
	}
	if synced {
		return "", fmt.Errorf("registry (etcd): %s: %w", name, engine.ErrNotRegistered)
	}
	ctx, cancel := context.WithTimeout(context.Background(), CallTimeout)
	defer cancel()
	resp, err := r.cli.Get(ctx, r.key(name))
	if err != nil {
		return "", fmt.Errorf("registry (etcd): look up %s: %w", name, err)
	}
	if len(resp.Kvs) == 0 {
		return "", fmt.Errorf("registry (etcd): %s: %w", name, engine.ErrNotRegistered)
	}
	e, ok := decode(resp.Kvs[0].Value)
	if !ok {
		return "", fmt.Errorf("registry (etcd): %s: damaged entry", name)
	}
	return e.Addr, nil
}

// Unregister implements engine.Registry: it removes name's entry if it
// still holds addr, and ends its lease.
func (r *Registry) Unregister(name, addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), CallTimeout)
	defer cancel()
	k := r.key(name)
	resp, err := r.cli.Get(ctx, k)
	if err != nil {
		return fmt.Errorf("registry (etcd): unregister %s: %w", name, err)
	}
	if len(resp.Kvs) == 1 {
		if e, ok := decode(resp.Kvs[0].Value); ok && e.Addr == addr {
			_, err = r.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", resp.Kvs[0].ModRevision)).Then(clientv3.OpDelete(k)).Commit()
			if err != nil {
				return fmt.Errorf("registry (etcd): unregister %s: %w", name, err)
			}
		}
	}
	r.mu.Lock()
	if stop := r.keepers[name]; stop != nil {
		stop()
		delete(r.keepers, name)
	}
	id, ok := r.leases[name]
	delete(r.leases, name)
	if r.cache[name] == addr {
		delete(r.cache, name)
	}
	r.mu.Unlock()
	if ok {
		_, _ = r.cli.Revoke(ctx, id)
	}
	return nil
}

// List returns every registered instance, by name.
func (r *Registry) List(ctx context.Context) ([]Entry, error) {
	ctx, cancel := context.WithTimeout(ctx, CallTimeout)
	defer cancel()
	pfx := r.prefix + "/instances/"
	resp, err := r.cli.Get(ctx, pfx, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("registry (etcd): list: %w", err)
	}
	var out []Entry
	for _, kv := range resp.Kvs {
		if e, ok := decode(kv.Value); ok {
			e.Name = strings.TrimPrefix(string(kv.Key), pfx)
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	for i := range out {
		reps, err := r.replicas(ctx, out[i].Name)
		if err != nil {
			return nil, err
		}
		out[i].Replicas = reps
	}
	return out, nil
}

// replicas lists the candidates of name's election, the leader (lowest
// create revision) first.
func (r *Registry) replicas(ctx context.Context, name string) ([]ReplicaEntry, error) {
	resp, err := r.cli.Get(ctx, r.prefix+"/elections/"+name+"/", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("registry (etcd): replicas of %s: %w", name, err)
	}
	var out []ReplicaEntry
	for i, kv := range resp.Kvs {
		n, err := strconv.Atoi(string(kv.Value))
		if err != nil {
			continue
		}
		e := ReplicaEntry{Replica: n, Role: "standby"}
		if i == 0 {
			e.Role, e.Epoch = "primary", uint64(kv.CreateRevision)
		}
		out = append(out, e)
	}
	return out, nil
}
