// Package app_test checks that the README documents every environment
// variable the services read.
package app_test

import (
	"os"
	"strings"
	"testing"

	"github.com/rollcall/rollcall/internal/app/notifierapp"
	"github.com/rollcall/rollcall/internal/app/pollerapp"
	"github.com/rollcall/rollcall/internal/envx"
)

func TestEveryVariableDocumented(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range []any{&pollerapp.Config{}, &notifierapp.Config{}} {
		for _, name := range envx.Names(target) {
			if !strings.Contains(string(readme), "`"+name+"`") {
				t.Errorf("README does not document %s", name)
			}
		}
	}
}
