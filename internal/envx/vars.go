package envx

import (
	"fmt"
	"reflect"
	"strings"
)

// Var is one environment variable a configuration struct reads.
type Var struct {
	Name    string
	Default string // "" when there is none
}

// Vars lists the variables of cfg, a struct (or a pointer to one) whose
// fields carry go-envconfig tags (env:"NAME, default=X"; a nested struct
// with env:", prefix=P_"), in field order.
func Vars(cfg any) []Var {
	t := reflect.TypeOf(cfg)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	fs := walk(t, "", "")
	out := make([]Var, len(fs))
	for i, f := range fs {
		out[i] = f.Var
	}
	return out
}

// field is a variable with go-envconfig's path to its field ("VPP:
// Interval"), which its errors quote.
type field struct {
	Var
	path string
	typ  reflect.Type // the field's type, pointers removed
}

// walk is the one reader of the env tags: Vars, Names and the renaming of
// errors all come from it.
func walk(t reflect.Type, path, prefix string) []field {
	var out []field
	for i := range t.NumField() {
		f := t.Field(i)
		tag, ok := f.Tag.Lookup("env")
		if !ok || !f.IsExported() {
			continue
		}
		name, def, pre := parseTag(tag)
		p := f.Name
		if path != "" {
			p = path + ": " + f.Name
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if name == "" && ft.Kind() == reflect.Struct {
			out = append(out, walk(ft, p, prefix+pre)...)
			continue
		}
		if name != "" {
			out = append(out, field{Var: Var{Name: prefix + name, Default: def}, path: p, typ: ft})
		}
	}
	return out
}

// parseTag splits env:"NAME, opt, …" into the name, the default (the last
// option, which may hold commas) and the prefix of a nested struct.
func parseTag(tag string) (name, def, prefix string) {
	name, opts, _ := strings.Cut(tag, ",")
	for opts != "" {
		var opt string
		opt, opts, _ = strings.Cut(opts, ",")
		opt = strings.TrimSpace(opt)
		switch {
		case strings.HasPrefix(opt, "default="):
			def = strings.TrimPrefix(opt, "default=")
			if opts != "" {
				def += "," + opts
			}
			opts = ""
		case strings.HasPrefix(opt, "prefix="):
			prefix = strings.TrimPrefix(opt, "prefix=")
		}
	}
	return strings.TrimSpace(name), def, prefix
}

// Usage is the environment section of a service's usage: every variable
// of cfg with its default, one a line, as the defaults really are (the
// struct tags envconfig reads).
func Usage(cfg any) string {
	vars := Vars(cfg)
	width := 0
	for _, v := range vars {
		width = max(width, len(v.Name))
	}
	var b strings.Builder
	b.WriteString("environment (default; unset: README.md says what the program does without it):\n")
	for _, v := range vars {
		def := v.Default
		if def == "" {
			def = "(unset)"
		}
		fmt.Fprintf(&b, "  %-*s  %s\n", width, v.Name, def)
	}
	return b.String()
}
