package deployments

import (
	"strings"
	"unicode"
)

// promSelector is one metric name in a PromQL expression with the label
// matchers written beside it.
type promSelector struct {
	name     string
	matchers []promMatcher
}

type promMatcher struct {
	label, op, value string
}

// promExpr is what the checks need from a PromQL expression: the metric
// names with their matchers, and the labels named in by/without/on/
// ignoring/group_left/group_right lists.
type promExpr struct {
	selectors []promSelector
	grouping  []string
}

var promKeywords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true,
	"inf": true, "nan": true, "start": true, "end": true,
}

// promAggregators may be followed by "by (…)" before their "(".
var promAggregators = map[string]bool{
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true,
	"limitk": true, "limit_ratio": true,
}

var promGroupers = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

// parsePromQL is a small scanner, not a full parser: enough to find every
// metric name (an identifier not followed by "(" that is not a keyword),
// its {…} matchers, and grouping label lists. It skips string literals,
// [range] and [subquery] brackets (so Grafana's $__rate_interval is
// harmless) and numbers.
func parsePromQL(expr string) promExpr {
	var out promExpr
	r := []rune(expr)
	i := 0
	skipSpace := func() {
		for i < len(r) && unicode.IsSpace(r[i]) {
			i++
		}
	}
	isIdentStart := func(c rune) bool { return c == '_' || c == ':' || unicode.IsLetter(c) }
	isIdent := func(c rune) bool { return isIdentStart(c) || unicode.IsDigit(c) }
	readString := func() string {
		q := r[i]
		i++
		var b strings.Builder
		for i < len(r) && r[i] != q {
			if r[i] == '\\' && q != '`' && i+1 < len(r) {
				i++
			}
			b.WriteRune(r[i])
			i++
		}
		i++ // closing quote
		return b.String()
	}
	readIdent := func() string {
		s := i
		for i < len(r) && isIdent(r[i]) {
			i++
		}
		return string(r[s:i])
	}
	// readMatchers reads {label op "value", …} starting at '{'.
	readMatchers := func() []promMatcher {
		var ms []promMatcher
		i++ // {
		for {
			skipSpace()
			if i >= len(r) || r[i] == '}' {
				i++
				return ms
			}
			if r[i] == ',' {
				i++
				continue
			}
			if !isIdentStart(r[i]) {
				i++
				continue
			}
			m := promMatcher{label: readIdent()}
			skipSpace()
			s := i
			for i < len(r) && strings.ContainsRune("=!~", r[i]) {
				i++
			}
			m.op = string(r[s:i])
			skipSpace()
			if i < len(r) && (r[i] == '"' || r[i] == '\'' || r[i] == '`') {
				m.value = readString()
			}
			ms = append(ms, m)
		}
	}
	for i < len(r) {
		c := r[i]
		switch {
		case unicode.IsSpace(c):
			i++
		case c == '"' || c == '\'' || c == '`':
			readString()
		case c == '#': // comment to end of line
			for i < len(r) && r[i] != '\n' {
				i++
			}
		case c == '[':
			for i < len(r) && r[i] != ']' {
				i++
			}
			i++
		case c == '{':
			// A selector without a metric name: {__name__="…"}.
			readMatchers()
		case unicode.IsDigit(c) || (c == '.' && i+1 < len(r) && unicode.IsDigit(r[i+1])):
			for i < len(r) && (isIdent(r[i]) || r[i] == '.') {
				i++
			}
		case isIdentStart(c):
			id := readIdent()
			skipSpace()
			lower := strings.ToLower(id)
			switch {
			case promGroupers[lower]:
				if i < len(r) && r[i] == '(' {
					i++
					for {
						skipSpace()
						if i >= len(r) || r[i] == ')' {
							i++
							break
						}
						if isIdentStart(r[i]) {
							out.grouping = append(out.grouping, readIdent())
						} else {
							i++
						}
					}
				}
			case promKeywords[lower], promAggregators[lower]:
			case i < len(r) && r[i] == '(':
				// a function or aggregation; its arguments are scanned next
			default:
				sel := promSelector{name: id}
				if i < len(r) && r[i] == '{' {
					sel.matchers = readMatchers()
				}
				out.selectors = append(out.selectors, sel)
			}
		default:
			i++
		}
	}
	return out
}
