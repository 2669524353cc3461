package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/ambr-dev/ambr/bench"
	"github.com/ambr-dev/ambr/engine/layout"
	// Before Bubble Tea: no terminal queries from commands (see its doc).
	_ "github.com/ambr-dev/ambr/internal/termquery"
)

func main() {
	// A child process of `ambr bench giant` runs its part and exits.
	bench.GiantChild()
	// Ctrl-C and SIGTERM cancel the command's context from the first moment
	// on; long-running commands (run, log --follow) stop cleanly on it.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := runContext(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit codes, documented in `ambr help`.
const (
	exitOK      = 0
	exitProblem = 1
	exitUsage   = 2
)

// exitError carries a specific exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

func problemErrorf(format string, args ...any) error {
	return &exitError{code: exitProblem, err: fmt.Errorf(format, args...)}
}

// run executes the CLI with args and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	return runContext(context.Background(), args, stdout, stderr)
}

func runContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "ambr: %s\n", strings.TrimSpace(err.Error()))
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return exitUsage
}

// globals are the options every command shares.
type globals struct {
	home   string
	stdout io.Writer
	stderr io.Writer
}

// Home returns the runtime home: --home, else $AMBR_HOME, else ./.ambr.
func (g *globals) Home() string { return layout.HomeFromEnv(g.home) }

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	g := &globals{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "ambr",
		Short: "ambr runs immortals: stateful components that behave as if machines never fail",
		Long: `ambr runs immortals: stateful components whose every input is durably logged
before it is processed, so they recover exactly after any crash. Because the
log holds the whole input history, ambr can also show any immortal's state at
any point of its past, replay it against new builds, and browse it.

Exit codes: 0 success; 1 the command ran and found a problem (damaged data,
a divergence); 2 the command could not run (bad usage, missing files).`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().StringVar(&g.home, "home", "", "runtime home directory (env AMBR_HOME, default ./.ambr)")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageErrorf("%v (see '%s --help')", err, c.CommandPath())
	})
	root.Version = readVersion().String()
	root.SetVersionTemplate("{{.Version}}\n")
	root.AddCommand(
		newDemoCmd(g),
		newRunCmd(g),
		newLsCmd(g),
		newKillCmd(g),
		newReplayCmd(g),
		newRetroCmd(g),
		newUpgradeCmd(g),
		newTuiCmd(g),
		newBenchCmd(g),
		newLogCmd(g),
		newCheckpointsCmd(g),
		newCertsCmd(g),
		newVersionCmd(g),
		newRegisterCmd(g),
	)
	refuseUnknownSubcommands(root)
	addCompletions(g, root)
	return root
}

// openInstance resolves NAME|DIR and opens the instance read-only.
func openInstance(g *globals, nameOrDir string) (*layout.Instance, error) {
	dir := layout.ResolveDir(g.Home(), nameOrDir)
	in, err := layout.Open(vfsDefault(), dir)
	if err != nil {
		if errors.Is(err, layout.ErrNoInstance) {
			return nil, &exitError{code: exitUsage, err: fmt.Errorf("no instance %q: %s has no MANIFEST (check the name, --home, or give the instance directory's path; 'ambr ls' lists instances)", nameOrDir, dir)}
		}
		return nil, problemErrorf("%v", err)
	}
	return in, nil
}

// refuseUnknownSubcommands makes every command that only groups others
// (ambr upgrade) fail on a subcommand it does not have, instead of cobra's
// default of printing its help and exiting 0: `ambr upgrade tset x` is a
// typo, and scripts must see it fail. Without arguments it prints its help.
func refuseUnknownSubcommands(c *cobra.Command) {
	for _, sub := range c.Commands() {
		refuseUnknownSubcommands(sub)
	}
	if c.Runnable() || !c.HasSubCommands() || c.Parent() == nil {
		return
	}
	c.Args = cobra.ArbitraryArgs
	c.SuggestionsMinimumDistance = 2
	c.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return cmd.Help()
		}
		var names []string
		for _, sub := range cmd.Commands() {
			if sub.IsAvailableCommand() {
				names = append(names, sub.Name())
			}
		}
		msg := fmt.Sprintf("unknown command %q for '%s' (it has: %s; see '%s --help')", args[0], cmd.CommandPath(), strings.Join(names, ", "), cmd.CommandPath())
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			msg = fmt.Sprintf("unknown command %q for '%s'; did you mean %q?", args[0], cmd.CommandPath(), s[0])
		}
		return usageErrorf("%s", msg)
	}
}
