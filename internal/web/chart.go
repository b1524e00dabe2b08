package web

import (
	"fmt"
	"html/template"
	"strings"
	"time"

	"github.com/rollcall/rollcall/pkg/events"
)

// dayCount is one day of the chart: events by type.
type dayCount struct {
	Day    time.Time
	Counts map[string]int
	Total  int
}

// countDays counts the events observed on each of the last n days (UTC,
// today included), by type. Types are events.Types, in their order.
func countDays(evs []EventRef, now time.Time, n int) ([]dayCount, []string) {
	today := now.UTC().Truncate(24 * time.Hour)
	first := today.AddDate(0, 0, -(n - 1))
	days := make([]dayCount, n)
	for i := range days {
		days[i] = dayCount{Day: first.AddDate(0, 0, i), Counts: map[string]int{}}
	}
	for _, ev := range evs {
		i := int(ev.Time.UTC().Truncate(24*time.Hour).Sub(first) / (24 * time.Hour))
		if ev.Time.Before(first) || i < 0 || i >= n {
			continue
		}
		days[i].Counts[ev.Type]++
		days[i].Total++
	}
	return days, events.Types
}

// typeColours are the chart's colours per event type, each with a
// contrast of at least 3:1 against the white background (WCAG 1.4.11).
var typeColours = map[string]string{
	events.TypeRegistered:  "#1f6feb",
	events.TypeAssociated:  "#1a7f37",
	events.TypeRetired:     "#cf222e",
	events.TypeRoleChanged: "#8250df",
	events.TypeUpdated:     "#9a6700",
}

// Chart geometry.
const (
	chartW, chartH = 760, 240
	plotL, plotR   = 44, 8
	plotT, plotB   = 10, 36
)

// chartSVG draws the days as stacked bars, one per day with events, each
// with a title a screen reader and a pointer can read. It is server-side
// SVG: it needs no script, and the table beside it holds the same numbers.
func chartSVG(days []dayCount, types []string) template.HTML {
	top := 0
	for _, d := range days {
		top = max(top, d.Total)
	}
	top = niceCeil(top)
	plotW, plotH := float64(chartW-plotL-plotR), float64(chartH-plotT-plotB)
	slot := plotW / float64(len(days))
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" role="img" aria-labelledby="chart-title" xmlns="http://www.w3.org/2000/svg">`, chartW, chartH)
	b.WriteString(`<title id="chart-title">Events per day by type, last 30 days</title>`)
	for i := 0; i <= 4; i++ { // the grid and its labels
		y := float64(plotT) + plotH*float64(4-i)/4
		fmt.Fprintf(&b, `<line class="grid" x1="%d" x2="%d" y1="%.1f" y2="%.1f"/><text class="axis" x="%d" y="%.1f" text-anchor="end">%d</text>`,
			plotL, chartW-plotR, y, y, plotL-6, y+4, top*i/4)
	}
	for i, d := range days {
		x := float64(plotL) + slot*float64(i)
		if i%5 == 0 || i == len(days)-1 {
			fmt.Fprintf(&b, `<text class="axis" x="%.1f" y="%d" text-anchor="middle">%s</text>`, x+slot/2, chartH-plotB+16, d.Day.Format("Jan 2"))
		}
		if d.Total == 0 {
			continue
		}
		fmt.Fprintf(&b, `<g class="bar" data-day="%s"><title>%s: %s</title>`, d.Day.Format("2006-01-02"), d.Day.Format("Mon 2 Jan"), template.HTMLEscapeString(dayText(d, types)))
		y := float64(plotT) + plotH
		for _, t := range types {
			n := d.Counts[t]
			if n == 0 {
				continue
			}
			h := plotH * float64(n) / float64(top)
			y -= h
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s" data-type="%s"/>`, x+slot*0.15, y, slot*0.7, h, typeColours[t], t)
		}
		b.WriteString(`</g>`)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // built here from numbers, dates and escaped text only
}

func dayText(d dayCount, types []string) string {
	var parts []string
	for _, t := range types {
		if n := d.Counts[t]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, typeLabel(t)))
		}
	}
	return strings.Join(parts, ", ")
}

// niceCeil is the chart's top: the smallest of 4×{1,2,5}×10^k that is at
// least n, so that the grid's four steps are round numbers.
func niceCeil(n int) int {
	for m := 1; ; m *= 10 {
		for _, step := range []int{1, 2, 5} {
			if s := step * m * 4; s >= n {
				return s
			}
		}
	}
}

// typeLabel says an event type as a person would.
func typeLabel(t string) string {
	switch t {
	case events.TypeRegistered:
		return "registered"
	case events.TypeAssociated:
		return "associated"
	case events.TypeRetired:
		return "retired"
	case events.TypeRoleChanged:
		return "role changed"
	case events.TypeUpdated:
		return "updated"
	}
	return t
}
