// Package secret resolves a secret given either directly or as a *_FILE
// path, so that deployments can mount secrets as files.
package secret

import (
	"fmt"
	"os"
	"strings"
)

// Resolve returns value, or the trimmed contents of file when value is
// empty. name is the variable's name, for the error message; the secret
// itself never appears in an error.
func Resolve(name, value, file string) (string, error) {
	if value != "" && file != "" {
		return "", fmt.Errorf("%s and %s_FILE are both set; set one", name, name)
	}
	if file == "" {
		return strings.TrimSpace(value), nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s_FILE: %w", name, err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s_FILE %s is empty", name, file)
	}
	return s, nil
}
