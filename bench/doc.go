// Package bench runs ambr's benchmark suites (shared/design/benchmarks.md):
// every figure is measured next to a baseline or a limit of the machine
// measured in the same run, repeated, and reported as the median with the
// min–max over the runs.
//
// The suites:
//
//   - Throughput: a job immortal sends forks of S bytes to a server immortal,
//     one-way (the server acknowledges progress every quarter window with a
//     small fork back, which is the job's flow control) and echo (the server
//     forks every message back). Two coordinators run in this process through
//     engine/hosted, each with its instance on the real disk under the chosen
//     directory, talking over loopback TCP; logging is durable (fdatasync) on
//     both sides. Baselines, same sizes and volume, same run: gRPC-Go unary
//     calls with several in flight, gRPC-Go streaming (client streaming
//     one-way, bidirectional for echo), raw TCP with ambr's adaptive batching
//     and window and no logging, and ambr itself with its log discarded
//     ("ambr-nolog") or written without fdatasync ("ambr-nosync"), through a
//     vfs.FS wrapper (the engine has no logging-off option).
//   - Latency: a call with a result, client immortal → server immortal
//     (samples/counter's server) → client, p50/p99/p99.9 with 1 (and more)
//     calls in flight, against gRPC-Go unary, next to the disk's fdatasync
//     latency measured in the same run.
//   - Conventional: the counter as a stateless gRPC handler doing a
//     read-modify-write transaction in PostgreSQL with an idempotency-key
//     table, against the ambr counter: requests/s and p50. The suite starts a
//     throw-away PostgreSQL (initdb + pg_ctl, as the postgres user when run as
//     root) if the Debian packages are installed, and is skipped with
//     instructions otherwise.
//   - Recovery: an instance with a checkpoint of C MiB and L MiB of log after
//     it is recovered from a cold page cache: time to live, records/s and MB/s,
//     next to the disk's cold sequential read rate measured in the same run.
//
// Run builds a Report; WriteText prints its tables, WriteJSON its numbers,
// and WriteChart draws the throughput sweep as a PNG (or SVG). The CLI is
// `ambr bench`.
package bench
