package bench

import (
	"context"
	"errors"
	"fmt"
	"runtime"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ConventionalResult compares the counter done the usual way — a stateless
// gRPC handler doing a read-modify-write transaction in PostgreSQL with an
// idempotency-key table — with the ambr counter, both durable (PostgreSQL
// with fsync and synchronous commit on). Rows hold each system at
// Concurrency calls in flight and at 1.
type ConventionalResult struct {
	// Skipped says why the suite did not run (no PostgreSQL).
	Skipped     string    `json:"skipped,omitempty"`
	Postgres    string    `json:"postgres,omitempty"`
	Concurrency int       `json:"concurrency"`
	Rows        []CallRow `json:"rows"`
	// Ratio is PostgreSQL's requests/s over ambr's, per run, at
	// Concurrency in flight.
	Ratio Summary  `json:"ratio"`
	Notes []string `json:"notes,omitempty"`
}

// SysPostgres names the conventional system in rows.
const SysPostgres = "postgres"

const convSchema = `
CREATE TABLE counter (id int PRIMARY KEY, n bigint NOT NULL);
INSERT INTO counter VALUES (1, 0);
CREATE TABLE idempotency (key bytea PRIMARY KEY, result bigint NOT NULL);
`

// pgIncrement is the stateless handler's work: return the result already
// recorded for key, or read the counter, add one, write it and record the
// result under key, in one transaction. A concurrent duplicate loses on the
// key's unique index and retries, finding the winner's result.
func pgIncrement(ctx context.Context, pool *pgxpool.Pool, key []byte) (int64, error) {
	for attempt := 0; ; attempt++ {
		n, err := pgIncrementOnce(ctx, pool, key)
		var pe *pgconn.PgError
		if err != nil && attempt < 10 && errors.As(err, &pe) && (pe.Code == "23505" || pe.Code == "40001" || pe.Code == "40P01") {
			continue
		}
		return n, err
	}
}

func pgIncrementOnce(ctx context.Context, pool *pgxpool.Pool, key []byte) (int64, error) {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(ctx)
	var n int64
	err = tx.QueryRow(ctx, `SELECT result FROM idempotency WHERE key = $1`, key).Scan(&n)
	if err == nil {
		return n, tx.Commit(ctx) // a retry: the recorded result
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return 0, err
	}
	if err := tx.QueryRow(ctx, `SELECT n FROM counter WHERE id = 1 FOR UPDATE`).Scan(&n); err != nil {
		return 0, err
	}
	n++
	if _, err := tx.Exec(ctx, `UPDATE counter SET n = $1 WHERE id = 1`, n); err != nil {
		return 0, err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO idempotency (key, result) VALUES ($1, $2)`, key, n); err != nil {
		return 0, err
	}
	return n, tx.Commit(ctx)
}

func runConventional(ctx context.Context, cfg Config, dir string) (*ConventionalResult, error) {
	conc := max(cfg.ConvConcurrency, 1)
	res := &ConventionalResult{Concurrency: conc}
	bin, err := findPostgres(cfg.PGBin)
	if err != nil {
		res.Skipped = err.Error()
		cfg.progress("conventional: skipped: %s", res.Skipped)
		return res, nil
	}
	cfg.progress("conventional: starting PostgreSQL from %s", bin)
	pg, err := startPostgres(ctx, bin, dir)
	if err != nil {
		return nil, fmt.Errorf("start PostgreSQL: %w", err)
	}
	defer pg.stop()
	res.Postgres = pg.Version
	if pg.Note != "" {
		res.Notes = append(res.Notes, pg.Note)
	}
	pcfg, err := pgxpool.ParseConfig(pg.URL())
	if err != nil {
		return nil, err
	}
	pcfg.MaxConns = int32(conc + 2)
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, convSchema); err != nil {
		return nil, fmt.Errorf("create the schema: %w", err)
	}
	gp, err := startGRPC(&grpcImpl{inc: func(ctx context.Context, key []byte) (int64, error) { return pgIncrement(ctx, pool, key) }})
	if err != nil {
		return nil, err
	}
	defer gp.close()

	reqs, single := max(cfg.ConvRequests, 1), max(cfg.LatencyCalls, 1)
	warm := cfg.LatencyWarmup
	var pgLoaded, pgSingle, ambrLoaded, ambrSingle []callSample
	var ratio []float64
	for r := 0; r < cfg.Runs; r++ {
		runtime.GC()
		s, err := runGRPCCalls(ctx, gp.conn, reqs, warm, conc, 0)
		if err != nil {
			return nil, fmt.Errorf("postgres, %d in flight: %w", conc, err)
		}
		pgLoaded = append(pgLoaded, s)
		cfg.progress("conventional postgres %2d in flight run %d/%d: %s", conc, r+1, cfg.Runs, describeSample(s))
		runtime.GC()
		a, err := runAmbrCalls(ctx, dir, reqs, warm, conc, 0)
		if err != nil {
			return nil, fmt.Errorf("ambr, %d in flight: %w", conc, err)
		}
		ambrLoaded = append(ambrLoaded, a)
		cfg.progress("conventional ambr     %2d in flight run %d/%d: %s", conc, r+1, cfg.Runs, describeSample(a))
		ratio = append(ratio, s.perSec/a.perSec)
		if conc == 1 {
			continue
		}
		runtime.GC()
		if s, err = runGRPCCalls(ctx, gp.conn, single, warm, 1, 0); err != nil {
			return nil, fmt.Errorf("postgres, 1 in flight: %w", err)
		}
		pgSingle = append(pgSingle, s)
		cfg.progress("conventional postgres  1 in flight run %d/%d: %s", r+1, cfg.Runs, describeSample(s))
		runtime.GC()
		if a, err = runAmbrCalls(ctx, dir, single, warm, 1, 0); err != nil {
			return nil, fmt.Errorf("ambr, 1 in flight: %w", err)
		}
		ambrSingle = append(ambrSingle, a)
		cfg.progress("conventional ambr      1 in flight run %d/%d: %s", r+1, cfg.Runs, describeSample(a))
	}
	res.Rows = append(res.Rows, rowOf(SysPostgres, conc, reqs, pgLoaded), rowOf(SysAmbr, conc, reqs, ambrLoaded))
	if conc != 1 {
		res.Rows = append(res.Rows, rowOf(SysPostgres, 1, single, pgSingle), rowOf(SysAmbr, 1, single, ambrSingle))
	}
	res.Ratio = Summarize(ratio)
	var n int64
	if err := pool.QueryRow(ctx, `SELECT n FROM counter WHERE id = 1`).Scan(&n); err != nil {
		return nil, err
	}
	want := int64(cfg.Runs * (reqs + warm))
	if conc != 1 {
		want += int64(cfg.Runs * (single + warm))
	}
	if n != want {
		return nil, fmt.Errorf("PostgreSQL counter is %d after %d requests", n, want)
	}
	return res, nil
}
