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
	return envVars(t, "")
}

func envVars(t reflect.Type, prefix string) []Var {
	var out []Var
	for i := range t.NumField() {
		f := t.Field(i)
		tag, ok := f.Tag.Lookup("env")
		if !ok || !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		name = strings.TrimSpace(name)
		var def, pre string
		for opts != "" {
			var opt string
			opt, opts, _ = strings.Cut(opts, ",")
			opt = strings.TrimSpace(opt)
			switch {
			case strings.HasPrefix(opt, "default="):
				// The default is the last option and may hold commas.
				def = strings.TrimPrefix(opt, "default=")
				if opts != "" {
					def += "," + opts
				}
				opts = ""
			case strings.HasPrefix(opt, "prefix="):
				pre = strings.TrimPrefix(opt, "prefix=")
			}
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if name == "" && ft.Kind() == reflect.Struct {
			out = append(out, envVars(ft, prefix+pre)...)
			continue
		}
		if name != "" {
			out = append(out, Var{Name: prefix + name, Default: def})
		}
	}
	return out
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
	b.WriteString("environment (default):\n")
	for _, v := range vars {
		def := v.Default
		if def == "" {
			def = "(none)"
		}
		fmt.Fprintf(&b, "  %-*s  %s\n", width, v.Name, def)
	}
	return b.String()
}
