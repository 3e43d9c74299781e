// Package redact hides the secrets of values that are printed: the server's
// configuration and the load benchmark's error messages.
package redact

import (
	"net/url"
	"strings"
)

// Mark stands in for a hidden value.
const Mark = "[redacted]"

// Secret returns Mark for a non-empty secret and "" for an empty one.
func Secret(secret string) string {
	if secret == "" {
		return ""
	}
	return Mark
}

// List returns Mark for a non-empty list of secrets and "" for an empty
// one.
func List(secrets []string) string {
	if len(secrets) == 0 {
		return ""
	}
	return Mark
}

// URL returns s with the password of its user info and of any
// password-like query parameter (a name containing pass, secret or token)
// shown as "xxxxx"; "" for "", and Mark for a string that does not parse
// as a URL.
func URL(s string) string {
	if s == "" {
		return ""
	}
	u, err := url.Parse(s)
	if err != nil {
		return Mark
	}
	if u.RawQuery != "" {
		q := u.Query()
		changed := false
		for k := range q {
			lk := strings.ToLower(k)
			if strings.Contains(lk, "pass") || strings.Contains(lk, "secret") || strings.Contains(lk, "token") {
				q[k] = []string{"xxxxx"}
				changed = true
			}
		}
		if changed {
			u.RawQuery = q.Encode()
		}
	}
	return u.Redacted()
}
