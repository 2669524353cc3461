// Package supervise does the process work around a coordinator: it turns
// what the user named as APP into an exact binary kept under the home
// (building a Go package, or copying an executable, content-addressed by its
// SHA-256 so tools can later replay history with the very same build), runs
// it as a child process next to the coordinator and restarts it when it
// dies, and keeps the instance's lock and run-status file.
//
//	<home>/.bin/<sha256>     the binaries that ran, kept for replay
//	<home>/<name>/LOCK       held (flock) by the one coordinator of the instance
//	<home>/<name>/RUN        JSON: coordinator and app pids, ports (not durable state)
package supervise
