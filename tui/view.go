package tui

import (
	"fmt"
	"github.com/ambr-dev/ambr/engine/immortal"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ambr-dev/ambr/logfmt/logview"
	"github.com/ambr-dev/ambr/timetravel"
)

func (b *browserModel) header(w int) string {
	s := b.c.styles
	name := filepath.Base(b.dir)
	parts := []string{}
	if b.in != nil {
		name = b.in.Manifest.Instance
		if b.last == 0 {
			parts = append(parts, "no records")
		} else {
			parts = append(parts, fmt.Sprintf("records %d–%d", b.first, b.last))
		}
		n := 0
		for _, ks := range b.markers {
			n += len(ks)
		}
		parts = append(parts, plural(n, "checkpoint"))
		if b.running {
			parts = append(parts, "running")
		} else {
			parts = append(parts, "stopped")
		}
		if b.following {
			parts = append(parts, "following")
		}
		if r := timetravel.RangeFor(b.builds, b.cursor); len(b.builds) > 1 && r != nil {
			// The record at the cursor ran on this build (an upgrade, a new
			// build); the state pane replays it on that build too.
			parts = append(parts, fmt.Sprintf("#%d ran build %d/%d (v%d)", b.cursor, r.N, len(b.builds), r.Version))
			if r.Source != "" {
				parts = append(parts, "app "+r.Source)
			}
		} else {
			parts = append(parts, fmt.Sprintf("v%d", b.in.Manifest.Version))
			if src := b.in.Manifest.App.Source; src != "" {
				parts = append(parts, "app "+src)
			}
		}
	}
	return s.HeaderName.Render("ambr") + s.Header.Render(" "+name) + s.Dim.Render(" · "+strings.Join(parts, " · "))
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func (b *browserModel) status(w int) string {
	s := b.c.styles
	if b.prompt != promptNone {
		return b.input.View()
	}
	if b.note != "" && b.noteErr {
		return s.Error.Render(b.note)
	}
	var parts []string
	if b.opened && b.openErr == nil && b.last > 0 {
		pos := fmt.Sprintf("#%d of %d–%d", b.cursor, b.first, b.last)
		if r := b.rank(b.cursor); b.filter != nil && r > 0 {
			pos += fmt.Sprintf(" · match %d/%d", r, len(b.matches))
		}
		parts = append(parts, pos)
	}
	if b.note != "" {
		parts = append(parts, b.note)
	}
	if b.mark != 0 {
		parts = append(parts, fmt.Sprintf("mark #%d", b.mark))
	}
	if b.filter != nil {
		f := "filter " + b.filter.text
		switch {
		case b.matches != nil && b.rank(b.cursor) == 0:
			f += fmt.Sprintf(" · %d matches", len(b.matches))
		case b.counting:
			f += fmt.Sprintf(" · counting… %d records read", b.counted.Load())
		}
		if b.searching {
			f += fmt.Sprintf(" · searching… %d records read", b.scanned.Load())
		} else {
			f += " · n/N next/prev"
		}
		parts = append(parts, f)
	}
	return s.Status.Render(strings.Join(parts, " · "))
}

func (b *browserModel) body(w, h int) []string {
	s := b.c.styles
	if !b.opened {
		msg := "opening " + b.dir + "…"
		if n := b.indexed.Load(); n > 0 {
			msg = fmt.Sprintf("indexing the log: %d records… (once: the index is kept under the home)", n)
		}
		return []string{"", "  " + msg}
	}
	if b.openErr != nil {
		out := []string{"", s.Error.Render("  cannot open " + b.dir)}
		for _, l := range wrapText(b.openErr.Error(), w-4) {
			out = append(out, "  "+l)
		}
		return append(out, "", s.Dim.Render("  esc: back to the instances · q: quit"))
	}
	g := b.geometry(w, h)
	sep := s.Separator.Render("│")
	list := b.listBlock(g.listW, g.listH)
	detail := b.paneBlock(paneDetail, b.detailTitle(), b.detailLines(g.detailW), b.detailOff, g.detailW, g.detailH)
	state := b.paneBlock(paneState, b.stateTitle(), b.stateLines(g.stateW), b.stateOff, g.stateW, g.stateH)
	if g.wide {
		return beside(sep, list, append(detail, state...))
	}
	return append(list, beside(sep, detail, state)...)
}

func (b *browserModel) title(p pane, text string, w int) string {
	s := b.c.styles
	if b.focus == p {
		return s.PaneTitleOn.Render(fit("▸ "+text, w))
	}
	return s.PaneTitle.Render(fit("  "+text, w))
}

// paneBlock draws a scrollable pane: a title and lines from off.
func (b *browserModel) paneBlock(p pane, title string, lines []string, off, w, h int) []string {
	rows := h - 1
	off = clampOffset(off, len(lines), rows)
	if off > 0 {
		title += fmt.Sprintf(" (line %d of %d)", off+1, len(lines))
	}
	return append([]string{b.title(p, title, w)}, column(lines[off:], w, rows)...)
}

// clampOffset keeps a scroll offset within content of n lines shown rows at
// a time.
func clampOffset(off, n, rows int) int { return max(0, min(off, n-rows)) }

func (b *browserModel) listBlock(w, h int) []string {
	s := b.c.styles
	title := "records"
	if b.last > 0 {
		title = fmt.Sprintf("records %d–%d", b.first, b.last)
	}
	switch {
	case b.onlyMatches():
		title = fmt.Sprintf("records matching %s: %d of %d", b.filter.text, len(b.matches), b.last-b.first+1)
	case b.filter != nil:
		title += " · * matches " + b.filter.text
	}
	out := []string{b.title(paneList, title, w)}
	if b.last == 0 {
		return append(out, column([]string{"", s.Dim.Render("  the log has no records yet (f follows it)")}, w, h-1)...)
	}
	digits := len(strconv.FormatInt(b.last, 10))
	out = append(out, s.Dim.Render(fit(b.rowHeadings(digits, w), w)))
	for _, l := range b.lines(h - 2) {
		if l.marker {
			text := fmt.Sprintf("   ── checkpoint %d: the state before #%d ", l.checkpoint, l.seq)
			text += strings.Repeat("─", max(0, w-len([]rune(text))))
			out = append(out, s.Marker.Render(fit(text, w)))
			continue
		}
		e, match, ok := b.entry(l.seq)
		text := fit(b.rowText(l.seq, e, ok, match, digits, w), w)
		switch {
		case l.seq == b.cursor && b.focus == paneList:
			text = s.RowCursor.Render(text)
		case l.seq == b.cursor:
			text = s.RowCursorOff.Render(text)
		case b.filter != nil && b.winMatch != nil && match:
			text = s.RowMatch.Render(text)
		case b.filter != nil && !b.onlyMatches():
			text = s.RowOther.Render(text)
		default:
			text = s.Row.Render(text)
		}
		out = append(out, text)
	}
	return column(out, w, h)
}

// rowText is one record's row: cursor, match and mark flags, sequence
// number, logged time, then the first message's kind, peer and method, and
// the record's size.
func (b *browserModel) rowText(seq int64, e timetravel.IndexEntry, ok, match bool, digits, w int) string {
	flags := []byte("   ")
	if seq == b.cursor {
		flags[0] = '>'
	}
	if match && b.filter != nil && b.winMatch != nil {
		flags[1] = '*'
	}
	if seq == b.mark {
		flags[2] = 'm'
	}
	lead := strings.Replace(string(flags), ">", "▸", 1)
	num := fmt.Sprintf("#%-*d", digits, seq)
	if !ok {
		return lead + " " + num + "  …"
	}
	parts := strings.Split(e.Summary, "; ")
	peer, kind, method := splitSummary(parts[0])
	if len(parts) > 1 {
		more := len(parts) - 1
		if parts[len(parts)-1] == "…" {
			method += fmt.Sprintf(" +%d…", more-1)
		} else {
			method += fmt.Sprintf(" +%d", more)
		}
	}
	size := byteSize(int64(e.Size))
	pw, mw := b.peerW, b.methodWidth(digits, w)
	return fmt.Sprintf("%s %s  %s  %-7s %-*s %-*s %9s", lead, num, e.Time.UTC().Format("15:04:05.000"),
		cut(kind, 7), pw, cut(peer, pw), mw, cut(method, mw), size)
}

// rowFixedWidth is a row's width without its method column.
func (b *browserModel) rowFixedWidth(digits int) int {
	return 3 + 1 + 1 + digits + 2 + 12 + 2 + 7 + 1 + b.peerW + 1 + 1 + 9
}

// rowWidth is the width of a row whose method column is mw wide.
func (b *browserModel) rowWidth(mw int) int {
	return b.rowFixedWidth(len(strconv.FormatInt(max(b.last, 1), 10))) + mw
}

func (b *browserModel) methodWidth(digits, w int) int { return max(8, w-b.rowFixedWidth(digits)) }

// rowHeadings names the list's columns, aligned with rowText.
func (b *browserModel) rowHeadings(digits, w int) string {
	return fmt.Sprintf("    %-*s  %-12s  %-7s %-*s %-*s %9s", digits+1, "SEQ", "TIME (UTC)", "KIND", b.peerW, cut("PEER", b.peerW),
		b.methodWidth(digits, w), "METHOD", "SIZE")
}

// cut shortens s to n runes, ending in … when cut.
func cut(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	if n <= 1 {
		return string(r[:n])
	}
	return string(r[:n-1]) + "…"
}

func (b *browserModel) detailTitle() string {
	if b.menuOpen {
		return fmt.Sprintf("actions on #%d", b.cursor)
	}
	if b.last == 0 {
		return "record"
	}
	return fmt.Sprintf("record #%d", b.cursor)
}

func (b *browserModel) detailLines(w int) []string {
	s := b.c.styles
	if b.menuOpen {
		var out []string
		for i, it := range b.menu() {
			line := "  " + it.label
			if i == b.menuIdx {
				line = "▸ " + it.label
			}
			line = fit(line, w)
			switch {
			case i == b.menuIdx:
				line = s.MenuOn.Render(line)
			case it.run == nil:
				line = s.MenuOff.Render(line)
			}
			out = append(out, line)
			if it.run == nil {
				out = append(out, s.MenuOff.Render("    ("+it.hint+")"))
			}
		}
		return append(out, "", s.Dim.Render("enter: do · esc: close"))
	}
	if b.last == 0 {
		return nil
	}
	if b.detailSeq != b.cursor || (b.detail == nil && b.detailErr == nil) {
		return []string{s.Dim.Render("reading…")}
	}
	if b.detailErr != nil {
		return wrapStyled(s.Error, b.detailErr.Error(), w)
	}
	v := b.detail
	out := []string{
		"logged " + v.Time.UTC().Format("2006-01-02T15:04:05.000Z"),
		fmt.Sprintf("%s at log-%d@%d · out %d · digest %s", byteSize(int64(v.Size)), v.Segment, v.Offset, v.OutCount, v.OutDigest),
	}
	for i, m := range v.Messages {
		label := ""
		if len(v.Messages) > 1 {
			label = fmt.Sprintf("%d/%d ", i+1, len(v.Messages))
		}
		out = append(out, b.messageLines(m, label, m.From, m.FromSeq, "", w)...)
	}
	return append(out, b.sentLines(w)...)
}

func (b *browserModel) messageLines(m logview.MessageView, label, from string, fromSeq int64, indent string, w int) []string {
	s := b.c.styles
	kind, method := messageLabels(m)
	if m.Result {
		method = m.ResultLabel()
	}
	head := label + kind
	if method != "" {
		head += " " + method
	}
	if from != "" {
		head += " from " + from
		if fromSeq != 0 {
			head += ":" + strconv.FormatInt(fromSeq, 10)
		}
	}
	headStyle := s.Bold
	if m.Failed {
		headStyle = s.Error
	}
	out := wrapStyled(headStyle, indent+head, w)
	switch {
	case m.Args != "":
		for _, l := range prettyJSON([]byte(m.Args)) {
			out = append(out, wrapPrefixed(indent+"  ", l, w)...)
		}
	case m.ArgsHex != "":
		raw := make([]byte, len(m.ArgsHex)/2)
		fmt.Sscanf(m.ArgsHex, "%x", &raw)
		for _, l := range hexLines(raw, 16) {
			out = append(out, indent+"  "+l)
		}
	}
	if m.Error != "" {
		out = append(out, wrapStyled(s.Error, indent+"  error: "+m.Error, w)...)
	}
	for i, sub := range m.Batch {
		out = append(out, b.messageLines(sub, fmt.Sprintf("%d/%d ", i+1, len(m.Batch)), from, 0, indent+"  ", w)...)
	}
	return out
}

// sentLines shows what the app sent while handling the selected record,
// once the state pane has replayed to it.
func (b *browserModel) sentLines(w int) []string {
	s := b.c.styles
	r := b.results[b.cursor]
	if r == nil {
		if b.noState != nil {
			return []string{s.Dim.Render("sent: unknown without a replay")}
		}
		return []string{s.Dim.Render("sent: shown once the state pane has replayed to it")}
	}
	var head string
	if r.From == r.Seq {
		head = fmt.Sprintf("sent while handling it: %d", r.SentTotal)
	} else {
		head = fmt.Sprintf("sent while replaying #%d–#%d: %d", r.From, r.Seq, r.SentTotal)
	}
	out := []string{s.Bold.Render(head)}
	for i, m := range r.Sent {
		if i == 50 {
			out = append(out, s.Dim.Render(fmt.Sprintf("… %d more", r.SentTotal-50)))
			break
		}
		out = append(out, wrapPrefixed("", fmt.Sprintf("→ %s %s %s %s", m.Dest, m.Kind, m.Method, m.Payload), w)...)
	}
	return out
}

func (b *browserModel) stateTitle() string {
	if b.last == 0 {
		return "state"
	}
	if b.diffOn && b.mark != 0 {
		return fmt.Sprintf("state after #%d · diff from #%d", b.cursor, b.mark)
	}
	return fmt.Sprintf("state after #%d", b.cursor)
}

func (b *browserModel) stateLines(w int) []string {
	s := b.c.styles
	if b.last == 0 {
		return nil
	}
	if b.noState != nil {
		out := wrapStyled(s.Error, "no state: "+b.noState.Error(), w)
		out = append(out, "")
		return append(out, wrapStyled(s.Dim, "The log can still be browsed. To see state, run ambr tui --app APP with the build to replay with.", w)...)
	}
	r := b.results[b.cursor]
	if r == nil {
		if b.stateErr != nil && b.stateErrSeq == b.cursor {
			out := wrapStyled(s.Error, "replay failed: "+b.stateErr.Error(), w)
			return append(out, "", s.Dim.Render("] or enter tries again"))
		}
		if b.c.opts.StateDelay < 0 && !b.stateBusy && b.stateWant != b.cursor {
			return []string{s.Dim.Render("not replayed yet: ] [ or enter replay")}
		}
		msg := "computing…"
		if done, total := b.worker.progress(); b.stateBusy && b.stateFor == b.cursor && total > 1 {
			msg = fmt.Sprintf("computing… replayed %d/%d records", done, total)
		}
		return []string{s.Dim.Render(msg)}
	}
	var out []string
	if b.diffOn && b.mark != 0 {
		out = append(out, b.diffLines(w)...)
		out = append(out, "")
	}
	switch {
	case r.State != nil:
		for _, l := range stateJSONLines(r.State, !b.unfolded) {
			out = append(out, wrapPrefixed("", l, w)...)
		}
	default:
		out = append(out, hexLines(r.Raw, 32)...)
	}
	if len(r.Binding) > 0 && string(r.Binding) != "null" {
		binding := r.Binding
		if durable, rest := immortal.SplitDurable(binding); durable != nil {
			// Orchestrations (their history, what they wait for), timers
			// and entities' states, folded like the state.
			out = append(out, "", s.Dim.Render("orchestrations, timers, entities (binding.durable):"))
			for _, l := range stateJSONLines(durable, !b.unfolded) {
				out = append(out, wrapPrefixed("", l, w)...)
			}
			binding = rest
		}
		out = append(out, "", s.Dim.Render("binding "+string(binding)))
	}
	return out
}

func (b *browserModel) diffLines(w int) []string {
	s := b.c.styles
	d := b.diff
	if d == nil || d.mark != b.mark || d.seq != b.cursor {
		return []string{s.Dim.Render(fmt.Sprintf("diff from #%d: computing…", b.mark))}
	}
	out := []string{s.Bold.Render(fmt.Sprintf("changes from #%d to #%d: %d", d.mark, d.seq, len(d.changes)))}
	for _, c := range d.changes {
		var line string
		var st = s.Changed
		switch {
		case c.Old == "":
			line, st = fmt.Sprintf("+ %s = %s", c.Path, c.New), s.Added
		case c.New == "":
			line, st = fmt.Sprintf("- %s (was %s)", c.Path, c.Old), s.Removed
		default:
			line = fmt.Sprintf("~ %s: %s → %s", c.Path, c.Old, c.New)
		}
		out = append(out, wrapStyled(st, line, w)...)
	}
	return out
}
