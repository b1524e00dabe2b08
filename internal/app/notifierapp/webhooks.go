package notifierapp

import (
	"context"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/sethvargo/go-envconfig"

	"github.com/rollcall/rollcall/internal/envx"
	"github.com/rollcall/rollcall/internal/secret"
	"github.com/rollcall/rollcall/pkg/events"
)

// NamedWebhook is one webhook of WEBHOOKS, read from WEBHOOK_<NAME>_*.
type NamedWebhook struct {
	Name       string   // as written in WEBHOOKS; its sink and consumer name
	URL        string   `env:"URL"`
	URLFile    string   `env:"URL_FILE"`
	Secret     string   `env:"SECRET"`
	SecretFile string   `env:"SECRET_FILE"`
	Types      []string `env:"TYPES"`
}

// webhookName is what WEBHOOKS accepts: a name that is a valid consumer
// name, subject token and variable part (upper-cased, - as _).
var webhookName = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)

// reservedSink tells whether name is taken by another sink or by the
// positional form, whose consumers (webhook, webhook-2, …) a named webhook
// must never take over.
func reservedSink(name string) bool {
	switch name {
	case "console", "slack", "webhook":
		return true
	}
	n, ok := strings.CutPrefix(name, "webhook-")
	_, err := strconv.Atoi(n)
	return ok && err == nil
}

// webhookPrefix is the prefix of a named webhook's variables.
func webhookPrefix(name string) string {
	return "WEBHOOK_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_")) + "_"
}

// loadNamedWebhooks reads WEBHOOK_<NAME>_* for every name of WEBHOOKS. The
// two forms do not mix: with WEBHOOKS, WEBHOOK_URL(_FILE) and the
// WEBHOOK_<n>_ overrides are refused, so that no webhook is configured
// twice or by position.
func loadNamedWebhooks(ctx context.Context, l envconfig.Lookuper, c *Config) error {
	if len(c.Webhooks) == 0 {
		return nil
	}
	if len(c.WebhookURL) > 0 || c.WebhookURLFile != "" {
		return fmt.Errorf("configuration: WEBHOOKS and WEBHOOK_URL (or WEBHOOK_URL_FILE) are both set; name every webhook in WEBHOOKS with its WEBHOOK_<NAME>_URL, or use WEBHOOK_URL alone")
	}
	if len(c.WebhookOverrides) > 0 {
		n := slices.Min(slices.Collect(maps.Keys(c.WebhookOverrides)))
		return fmt.Errorf("configuration: WEBHOOK_%d_* is for the positional WEBHOOK_URL form; with WEBHOOKS use WEBHOOK_<NAME>_SECRET and WEBHOOK_<NAME>_TYPES", n)
	}
	prefixes := map[string]string{}
	for i, name := range c.Webhooks {
		name = strings.TrimSpace(name)
		switch {
		case name == "":
			return fmt.Errorf("configuration: WEBHOOKS entry %d is empty (a stray comma?); want names like crm,hr", i+1)
		case !webhookName.MatchString(name):
			return fmt.Errorf("configuration: WEBHOOKS entry %q: want a name of lower-case letters, digits, - and _, starting with a letter, at most 32 long", name)
		case reservedSink(name):
			return fmt.Errorf("configuration: WEBHOOKS entry %q is reserved (console, slack, webhook and webhook-<n> are the names of other sinks); choose another", name)
		}
		p := webhookPrefix(name)
		if other, ok := prefixes[p]; ok {
			return fmt.Errorf("configuration: WEBHOOKS names %q and %q share the variables %s*; choose names that differ in more than - and _", other, name, p)
		}
		prefixes[p] = name
		w := NamedWebhook{Name: name}
		if err := envx.ProcessPrefixed(ctx, &w, l, p); err != nil {
			return fmt.Errorf("configuration: %w", err)
		}
		var err error
		if w.Types, err = filterList(l, p+"TYPES", typeList, events.CheckType); err != nil {
			return err
		}
		if err := checkSecrets(p+"SECRET", w.Secret); err != nil {
			return err
		}
		c.NamedWebhooks = append(c.NamedWebhooks, w)
	}
	return nil
}

// webhookSpec is one webhook to build, from either form: the variable
// names to quote in errors, and what the sink gets.
type webhookSpec struct {
	name    string
	named   bool   // from WEBHOOKS
	urlVar  string // "WEBHOOK_URL #2", "WEBHOOK_CRM_URL"
	url     string
	secrets []string
	types   []string
}

// webhookSpecs resolves every webhook: named (WEBHOOKS) or positional
// (WEBHOOK_URL, webhook, webhook-2, … by place), with files read and the
// shared WEBHOOK_SECRET and WEBHOOK_TYPES applied where a webhook has none
// of its own.
func webhookSpecs(cfg Config) ([]webhookSpec, error) {
	shared, err := resolveSecret("WEBHOOK_SECRET", cfg.WebhookSecret, cfg.WebhookSecretFile)
	if err != nil {
		return nil, err
	}
	var specs []webhookSpec
	if len(cfg.NamedWebhooks) > 0 {
		specs, err = namedSpecs(cfg, strings.Fields(shared))
	} else {
		specs, err = positionalSpecs(cfg, strings.Fields(shared))
	}
	return specs, err
}

// resolveSecret reads a secret variable or its _FILE form and checks that
// it holds whsec_ secrets, naming the variable it came from.
func resolveSecret(name, value, file string) (string, error) {
	s, err := secret.Resolve(name, value, file)
	if err != nil {
		return "", fmt.Errorf("configuration: %w", err)
	}
	from := name
	if file != "" {
		from = name + "_FILE"
	}
	if err := checkSecrets(from, s); err != nil {
		return "", err
	}
	return s, nil
}

func namedSpecs(cfg Config, shared []string) ([]webhookSpec, error) {
	var out []webhookSpec
	for _, w := range cfg.NamedWebhooks {
		p := webhookPrefix(w.Name)
		u, err := secret.Resolve(p+"URL", w.URL, w.URLFile)
		if err != nil {
			return nil, fmt.Errorf("configuration: %w", err)
		}
		if strings.TrimSpace(u) == "" {
			return nil, fmt.Errorf("configuration: WEBHOOKS names %q but %sURL (or %sURL_FILE) is not set", w.Name, p, p)
		}
		s := webhookSpec{name: w.Name, named: true, urlVar: p + "URL", url: strings.TrimSpace(u), secrets: shared, types: cfg.WebhookTypes}
		own, err := resolveSecret(p+"SECRET", w.Secret, w.SecretFile)
		if err != nil {
			return nil, err
		}
		if own != "" {
			s.secrets = strings.Fields(own)
		}
		if len(w.Types) > 0 {
			s.types = w.Types
		}
		out = append(out, s)
	}
	return out, nil
}

func positionalSpecs(cfg Config, shared []string) ([]webhookSpec, error) {
	urls := cfg.WebhookURL
	if cfg.WebhookURLFile != "" {
		if len(urls) > 0 {
			return nil, fmt.Errorf("configuration: WEBHOOK_URL and WEBHOOK_URL_FILE are both set; set one")
		}
		s, err := secret.Resolve("WEBHOOK_URL", "", cfg.WebhookURLFile)
		if err != nil {
			return nil, fmt.Errorf("configuration: %w", err)
		}
		urls = strings.Split(s, ",")
	}
	if err := checkOverrides(urls, cfg.WebhookOverrides); err != nil {
		return nil, err
	}
	var out []webhookSpec
	for i, u := range urls {
		u = strings.TrimSpace(u)
		if u == "" {
			continue
		}
		s := webhookSpec{name: "webhook", urlVar: fmt.Sprintf("WEBHOOK_URL #%d", i+1), url: u, secrets: shared, types: cfg.WebhookTypes}
		if i > 0 {
			s.name = "webhook-" + strconv.Itoa(i+1)
		}
		if o, ok := cfg.WebhookOverrides[i+1]; ok {
			v := fmt.Sprintf("WEBHOOK_%d_SECRET", i+1)
			own, err := resolveSecret(v, o.Secret, o.SecretFile)
			if err != nil {
				return nil, err
			}
			if own != "" {
				s.secrets = strings.Fields(own)
			}
			if len(o.Types) > 0 {
				s.types = o.Types
			}
		}
		out = append(out, s)
	}
	return out, nil
}
