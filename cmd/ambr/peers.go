package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ambr-dev/ambr/engine"
	"github.com/ambr-dev/ambr/engine/etcdreg"
	"github.com/ambr-dev/ambr/engine/trust"
)

// peerSetup turns ambr run's coordinator-network flags into the registry
// and the TLS identity of instance name. The registry is --registry: a
// directory (default <home>/.registry) or etcd://…; the identity comes from
// --tls DIR, else from the local CA under the registry directory (on one
// host; across hosts, give --tls), and is nil with --peer-tls off. closeReg
// releases the registry's connection.
func peerSetup(g *globals, o runOptions, name string) (reg engine.Registry, id *trust.Identity, closeReg func(), err error) {
	closeReg = func() {}
	if o.peerTLS != "on" && o.peerTLS != "off" {
		return nil, nil, closeReg, usageErrorf("--peer-tls %q: use on or off", o.peerTLS)
	}
	if _, _, err := net.SplitHostPort(o.peerAddr); err != nil {
		return nil, nil, closeReg, usageErrorf("--peer-addr %q: give HOST:PORT, such as 0.0.0.0:7400 (%v)", o.peerAddr, err)
	}
	localCA := engine.DefaultRegistryDir(g.Home())
	switch {
	case etcdreg.IsURL(o.registry):
		eps, err := etcdreg.ParseURL(o.registry)
		if err != nil {
			return nil, nil, closeReg, usageErrorf("--registry: %v", err)
		}
		r, err := etcdreg.Open(eps)
		if err != nil {
			return nil, nil, closeReg, usageErrorf("--registry: %v", err) // exit 2: could not start
		}
		reg, closeReg = r, func() { _ = r.Close() }
	case o.registry != "":
		reg, localCA = engine.FileRegistry{Dir: o.registry}, o.registry
	}
	fail := func(e error) (engine.Registry, *trust.Identity, func(), error) {
		closeReg()
		return nil, nil, func() {}, e
	}
	if o.peerTLS == "off" {
		if o.tlsDir != "" {
			return fail(usageErrorf("--tls %s with --peer-tls off: choose one", o.tlsDir))
		}
		return reg, nil, closeReg, nil
	}
	var ca *trust.Authority
	if o.tlsDir != "" {
		ca, err = trust.Open(o.tlsDir)
	} else {
		ca, err = trust.Local(localCA)
	}
	if err != nil {
		return fail(usageErrorf("--tls: %v", err))
	}
	if id, err = ca.Identity(name); err != nil {
		return fail(usageErrorf("--tls: %v", err))
	}
	return reg, id, closeReg, nil
}

// lsRegistry is `ambr ls --registry etcd://…`: the instances registered
// there, on every host.
func lsRegistry(g *globals, url string, asJSON bool) error {
	if !etcdreg.IsURL(url) {
		return usageErrorf("--registry %q: ls reads an etcd registry (etcd://HOST:PORT); a directory registry's instances are the ones under --home", url)
	}
	eps, err := etcdreg.ParseURL(url)
	if err != nil {
		return usageErrorf("--registry: %v", err)
	}
	r, err := etcdreg.Open(eps)
	if err != nil {
		return problemErrorf("--registry: %v", err)
	}
	defer r.Close()
	entries, err := r.List(context.Background())
	if err != nil {
		return problemErrorf("%v", err)
	}
	if asJSON {
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		if entries == nil {
			entries = []etcdreg.Entry{}
		}
		return enc.Encode(entries)
	}
	if len(entries) == 0 {
		fmt.Fprintf(g.stdout, "no instances registered in %s\n", url)
		return nil
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tADDRESS\tHOST\tPID\tREGISTERED\tREPLICAS")
	for _, e := range entries {
		reps := "-"
		if len(e.Replicas) > 0 {
			var parts []string
			for _, r := range e.Replicas {
				p := fmt.Sprintf("%d %s", r.Replica, r.Role)
				if r.Epoch != 0 {
					p += fmt.Sprintf(" (epoch %d)", r.Epoch)
				}
				parts = append(parts, p)
			}
			reps = strings.Join(parts, ", ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", e.Name, e.Addr, e.Host, e.PID, time.Unix(0, e.Updated).Format(time.RFC3339), reps)
	}
	return tw.Flush()
}
