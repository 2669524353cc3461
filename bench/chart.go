package bench

import (
	"errors"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// WriteChart draws the throughput sweep as an image: per mode, horizontal
// bars of MB/s for each system, grouped by message size, on a log scale.
// The format follows path's extension: .svg, else PNG.
func WriteChart(path string, rep *Report) error {
	t := rep.Throughput
	if t == nil || len(t.Modes) == 0 {
		return errors.New("no throughput results to chart (run the throughput suite)")
	}
	var plots [][]*plot.Plot
	for _, m := range t.Modes {
		p, err := sweepPlot(t.Systems, m, rep)
		if err != nil {
			return err
		}
		plots = append(plots, []*plot.Plot{p})
	}
	groups := len(t.Modes[0].Sizes)
	w := 8 * vg.Inch
	h := vg.Length(float64(len(t.Modes))*(1.2+0.075*float64(groups*len(t.Systems)))) * vg.Inch
	var c interface {
		vg.CanvasSizer
		io.WriterTo
	}
	if strings.EqualFold(filepath.Ext(path), ".svg") {
		c = vgsvg.New(w, h)
	} else {
		c = vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(110))}
	}
	dc := draw.New(c)
	tiles := draw.Tiles{Rows: len(plots), Cols: 1, PadTop: vg.Points(6), PadBottom: vg.Points(6), PadLeft: vg.Points(6), PadRight: vg.Points(10), PadY: vg.Points(14)}
	cs := plot.Align(plots, tiles, dc)
	for i := range plots {
		plots[i][0].Draw(cs[i][0])
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func sweepPlot(systems []string, m ThroughputMode, rep *Report) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("ambr bench throughput, %s: payload MB/s (log scale), median of %d run(s); %d cores, %s fdatasync/s",
		modeTitle(m.Mode), rep.Config.Runs, rep.Machine.Cores, si(rep.Machine.Fdatasync.PerSec))
	p.Title.TextStyle.Font.Size = vg.Points(10)
	p.X.Label.Text = "MB/s"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	lo, hi := math.Inf(1), 0.0
	for _, s := range m.Sizes {
		for _, sys := range systems {
			if v := s.Rates[sys].MBps.Median; v > 0 {
				lo, hi = min(lo, v), max(hi, v)
			}
		}
	}
	if hi == 0 {
		return nil, errors.New("no positive throughput to chart")
	}
	floor := math.Pow(10, math.Floor(math.Log10(lo/1.5)))
	n := len(m.Sizes)
	var ticks []plot.Tick
	for i, s := range m.Sizes {
		ticks = append(ticks, plot.Tick{Value: float64(n - 1 - i), Label: SizeName(int64(s.Size))})
	}
	p.Y.Tick.Marker = plot.ConstantTicks(ticks)
	p.Y.Label.Text = "message size"
	band := 0.8 / float64(len(systems))
	for j, sys := range systems {
		b := &hbars{floor: floor, height: band * 0.9, color: plotutil.Color(j), n: n,
			offset: 0.4 - band*(float64(j)+0.5)}
		for i, s := range m.Sizes {
			b.vals = append(b.vals, barVal{y: float64(n - 1 - i), v: s.Rates[sys].MBps.Median})
		}
		p.Add(b)
		p.Legend.Add(systemTitle(sys), b)
	}
	// The legend sits in the empty decades right of the longest bar.
	p.Legend.Top = true
	p.Legend.Left = false
	p.Legend.XOffs = -vg.Points(4)
	p.Legend.TextStyle.Font.Size = vg.Points(9)
	p.X.Max = hi * 15
	return p, nil
}

type barVal struct{ y, v float64 }

// hbars is one system's horizontal bars, from floor to the value, at an
// offset within each size's band.
type hbars struct {
	vals           []barVal
	floor          float64
	offset, height float64
	n              int
	color          color.Color
}

func (b *hbars) Plot(c draw.Canvas, plt *plot.Plot) {
	trX, trY := plt.Transforms(&c)
	for _, bv := range b.vals {
		if bv.v <= 0 {
			continue
		}
		y := bv.y + b.offset
		x0, x1 := trX(b.floor), trX(bv.v)
		y0, y1 := trY(y-b.height/2), trY(y+b.height/2)
		c.FillPolygon(b.color, c.ClipPolygonXY([]vg.Point{{X: x0, Y: y0}, {X: x1, Y: y0}, {X: x1, Y: y1}, {X: x0, Y: y1}}))
	}
}

func (b *hbars) DataRange() (xmin, xmax, ymin, ymax float64) {
	xmax = b.floor
	for _, bv := range b.vals {
		xmax = max(xmax, bv.v)
	}
	return b.floor, xmax, -0.5, float64(b.n) - 0.5
}

func (b *hbars) Thumbnail(c *draw.Canvas) {
	pts := []vg.Point{{X: c.Min.X, Y: c.Min.Y}, {X: c.Max.X, Y: c.Min.Y}, {X: c.Max.X, Y: c.Max.Y}, {X: c.Min.X, Y: c.Max.Y}}
	c.FillPolygon(b.color, pts)
}
