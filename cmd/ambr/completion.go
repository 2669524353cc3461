package main

import (
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/engine/supervise"
)

// addCompletions teaches cobra's shell completion (ambr completion bash|zsh|
// fish|powershell) what ambr's arguments are: instance names under the
// home, points in time, suites and choices. It is done here, by command
// path, so each command's file stays about what the command does.
func addCompletions(g *globals, root *cobra.Command) {
	instances := func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		return instanceNames(g, false), cobra.ShellCompDirectiveDefault // default: a DIR path also works
	}
	oneInstance := func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return instances(cmd, args, toComplete)
	}
	running := func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return instanceNames(g, true), cobra.ShellCompDirectiveNoFileComp
	}
	points := func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		if len(args) == 0 {
			return []string{"end", "seq:", "checkpoint:"}, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
		}
		return pointCandidates(g, args[0]), cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
	}
	checkpointNumbers := func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		if len(args) == 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []string
		for _, n := range checkpointsOf(g, args[0]) {
			out = append(out, strconv.FormatUint(n, 10))
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
	choices := func(values ...string) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			return values, cobra.ShellCompDirectiveNoFileComp
		}
	}
	for path, f := range map[string]func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective){
		"log":          oneInstance,
		"checkpoints":  oneInstance,
		"replay":       oneInstance,
		"tui":          oneInstance,
		"kill":         running,
		"retro-test":   instances,
		"upgrade test": instances,
		"bench":        choices("throughput", "latency", "conventional", "recovery"),
		"demo":         choices("counter", "accumulator"),
	} {
		if c := findCommand(root, path); c != nil && c.ValidArgsFunction == nil {
			c.ValidArgsFunction = f
		}
	}
	flagCompletions := map[string]map[string]func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective){
		"log":          {"from": points, "until": points},
		"replay":       {"until": points, "diff": points, "from-checkpoint": checkpointNumbers},
		"retro-test":   {"until": points, "from-checkpoint": checkpointNumbers},
		"upgrade test": {"until": points, "from-checkpoint": checkpointNumbers},
		"run": {"name": func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			return instanceNames(g, false), cobra.ShellCompDirectiveNoFileComp
		}, "nondeterminism": choices("stop", "warn")},
	}
	for path, flags := range flagCompletions {
		c := findCommand(root, path)
		if c == nil {
			continue
		}
		for name, f := range flags {
			if c.Flags().Lookup(name) != nil {
				_ = c.RegisterFlagCompletionFunc(name, f)
			}
		}
	}
}

// findCommand returns the command at path ("upgrade test") under root.
func findCommand(root *cobra.Command, path string) *cobra.Command {
	c := root
	for _, name := range strings.Fields(path) {
		var next *cobra.Command
		for _, sub := range c.Commands() {
			if sub.Name() == name {
				next = sub
			}
		}
		if next == nil {
			return nil
		}
		c = next
	}
	return c
}

// instanceNames lists the instances under the home (directories with a
// MANIFEST), only running ones if running is set. Completion must be
// quick, so it reads directory entries, not logs.
func instanceNames(g *globals, running bool) []string {
	home := g.Home()
	entries, err := os.ReadDir(home)
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range entries {
		dir := filepath.Join(home, e.Name())
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, layout.ManifestFile)); err != nil {
			continue
		}
		if running {
			if _, ok := supervise.ReadRunStatus(dir); !ok {
				continue
			}
		}
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

// checkpointsOf lists the checkpoint numbers of the instance NAME|DIR.
func checkpointsOf(g *globals, nameOrDir string) []uint64 {
	in, err := layout.Open(vfsDefault(), layout.ResolveDir(g.Home(), nameOrDir))
	if err != nil {
		return nil
	}
	nums, _ := in.Checkpoints()
	return nums
}

// pointCandidates are the points to offer for the instance NAME|DIR:
// end, seq:, and checkpoint:K+ for each of its checkpoints.
func pointCandidates(g *globals, nameOrDir string) []string {
	out := []string{"end", "seq:"}
	nums := checkpointsOf(g, nameOrDir)
	if len(nums) == 0 {
		return append(out, "checkpoint:")
	}
	for _, n := range nums {
		out = append(out, "checkpoint:"+strconv.FormatUint(n, 10)+"+")
	}
	return out
}
