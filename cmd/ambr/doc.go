// Command ambr runs immortals and the tools that read their logs.
//
// Every subcommand is built by a constructor that takes its dependencies (the
// output streams and the shared options), so the whole CLI runs in-process
// in tests. Exit codes: 0 success, 1 the command ran and found a problem
// (damaged data, a divergence), 2 the command could not run (bad usage,
// missing files).
package main
