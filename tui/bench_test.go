package tui

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/ambr-dev/ambr/engine/layout"
)

var (
	benchRecords = flag.Int("tui-records", 200_000, "BenchmarkBrowse: records in the synthetic counter log (10_000_000 for the big run)")
	benchDir     = flag.String("tui-bench-dir", "", "BenchmarkBrowse: keep the synthetic home (log and index) here and reuse it across runs")
)

var (
	benchOnce sync.Once
	benchHome string
	benchTemp string // removed at the end of the run
)

// benchInstance writes the synthetic log (once per run, or once ever with
// -tui-bench-dir) and builds its index, as a first `ambr tui` or `ambr
// replay` would.
func benchInstance(b *testing.B) (home, dir string) {
	benchOnce.Do(func() {
		home = *benchDir
		if home == "" {
			var err error
			if home, err = os.MkdirTemp("", "ambr-tui-bench-"); err != nil {
				b.Fatal(err)
			}
			benchTemp = home
		}
		benchHome = home
		dir := filepath.Join(home, fmt.Sprintf("server-%d", *benchRecords))
		if _, err := os.Stat(filepath.Join(dir, layout.ManifestFile)); err != nil { // written last
			os.RemoveAll(dir)
			start := time.Now()
			writeCounterLog(b, dir, *benchRecords, 1<<20, "")
			b.Logf("wrote %d records in %v", *benchRecords, time.Since(start).Round(time.Millisecond))
		}
		start := time.Now()
		m := benchModel(home, dir)
		openSync(b, m)
		m.Close()
		b.Logf("indexed (or checked the index of) %d records in %v", *benchRecords, time.Since(start).Round(time.Millisecond))
	})
	return benchHome, filepath.Join(benchHome, fmt.Sprintf("server-%d", *benchRecords))
}

// benchModel is a browser on dir whose timers are dropped (the benchmark
// runs commands in line) and which replays nothing (no build).
func benchModel(home, dir string) *Model {
	m := New(Options{Home: home, Instance: dir, Renderer: plainRenderer(), StateDelay: -1, RefreshEvery: -1})
	m.c.tick = func(time.Duration, func(time.Time) tea.Msg) tea.Cmd { return nil }
	return m
}

// runSync delivers msg and runs the commands that follow in line until
// none is left: the model's work, without a program's goroutines.
func runSync(m *Model, msg tea.Msg) {
	queue := []tea.Msg{msg}
	for len(queue) > 0 {
		msg := queue[0]
		queue = queue[1:]
		switch msg := msg.(type) {
		case nil:
		case tea.BatchMsg:
			for _, c := range msg {
				if c != nil {
					queue = append(queue, c())
				}
			}
		default:
			if _, cmd := m.Update(msg); cmd != nil {
				queue = append(queue, cmd())
			}
		}
	}
}

// openSync opens the model's instance at 80x24 and draws it.
func openSync(b *testing.B, m *Model) {
	runSync(m, tea.WindowSizeMsg{Width: 80, Height: 24})
	runSync(m, m.Init()())
	if v := m.View(); !strings.Contains(v, "#1 of 1–") || !strings.Contains(v, "initial from") {
		b.Fatalf("not open:\n%s", v)
	}
}

// BenchmarkBrowse measures the browser over a long log (-tui-records,
// default 200,000; 10,000,000 for the big run, ~1.2 GB of log and a
// Badger index built once, kept with -tui-bench-dir):
//
//	open       a new browser: open the index, check it is up to date, read
//	           the first page and record, draw
//	page-down  pgdn: the next rows (a new page read from the index every
//	           other time), the selected record decoded, draw
//	jump       `:N` to a random record: resolve, read its page and record, draw
//
//	go test ./tui -run '^$' -bench Browse -tui-records 10000000 -tui-bench-dir /tmp/tuibench
func BenchmarkBrowse(b *testing.B) {
	home, dir := benchInstance(b)
	b.Run("open", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			m := benchModel(home, dir)
			openSync(b, m)
			b.StopTimer()
			m.Close()
			b.StartTimer()
		}
	})
	m := benchModel(home, dir)
	defer m.Close()
	openSync(b, m)
	pgdown := tea.KeyMsg{Type: tea.KeyPgDown}
	b.Run("page-down", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			runSync(m, pgdown)
			_ = m.View()
			if m.browser.cursor == m.browser.last {
				b.StopTimer()
				runSync(m, tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune{'g'}})
				b.StartTimer()
			}
		}
	})
	rng := rand.New(rand.NewPCG(1, 2))
	b.Run("jump", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			seq := 1 + rng.Int64N(int64(*benchRecords))
			runSync(m, tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune{':'}})
			runSync(m, tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(fmt.Sprint(seq))})
			runSync(m, tea.KeyMsg{Type: tea.KeyEnter})
			if v := m.View(); m.browser.cursor != seq || (seq > 1 && !strings.Contains(v, fmt.Sprintf(`"n": %d`, seq))) {
				b.Fatalf("did not land on #%d:\n%s", seq, v)
			}
		}
	})
}
