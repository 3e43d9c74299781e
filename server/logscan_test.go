package main

// After the whole test run, every log line written by every server the
// tests started (startServer registers its log buffer here) is scanned for
// secrets: Stripe secret and restricted keys, webhook signing secrets,
// JWTs, client secrets, card numbers, Authorization headers, the
// development JWT secret, and the secret values each server was configured
// with. A finding fails the run with the offending line, redacted.

import (
	"bufio"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// collectedLogs are the log buffers of every server started in this run
// and the secrets each one was configured with.
var collectedLogs struct {
	mu      sync.Mutex
	servers []scannedServer
}

type scannedServer struct {
	logs    *syncBuffer
	secrets []string
}

// collectLogs registers a server's log buffer (and its configured secret
// values) for the scan at the end of the run.
func collectLogs(logs *syncBuffer, cfg Config) {
	secrets := append([]string{DevJWTSecret, cfg.Stripe.SecretKey, cfg.JWT.HS256Secret, cfg.MetricsToken}, cfg.Stripe.WebhookSecrets...)
	for _, raw := range []string{cfg.DatabaseURL, cfg.RedisURL} {
		if u, err := url.Parse(raw); err == nil && u.User != nil {
			if p, ok := u.User.Password(); ok {
				secrets = append(secrets, p)
			}
		}
	}
	var keep []string
	for _, s := range secrets {
		if len(s) >= 6 {
			keep = append(keep, s)
		}
	}
	collectedLogs.mu.Lock()
	defer collectedLogs.mu.Unlock()
	collectedLogs.servers = append(collectedLogs.servers, scannedServer{logs: logs, secrets: keep})
}

func TestMain(m *testing.M) {
	code := m.Run()
	if scanCode := scanCollectedLogs(os.Stdout); code == 0 {
		code = scanCode
	}
	os.Exit(code)
}

// scanCollectedLogs scans every collected buffer, reports to w, and
// returns 1 when a secret was found or when servers ran but no log byte
// was scanned (a scan that cannot have looked at anything must not pass).
func scanCollectedLogs(w *os.File) int {
	collectedLogs.mu.Lock()
	servers := append([]scannedServer(nil), collectedLogs.servers...)
	collectedLogs.mu.Unlock()

	var bytesScanned, lines int
	var findings []string
	for i, srv := range servers {
		text := srv.logs.String()
		bytesScanned += len(text)
		sc := bufio.NewScanner(strings.NewReader(text))
		sc.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
		for sc.Scan() {
			lines++
			if kinds := findSecrets(sc.Text(), srv.secrets); len(kinds) > 0 {
				findings = append(findings, fmt.Sprintf("server #%d: %s: %s", i+1, strings.Join(kinds, ", "),
					redactLine(sc.Text(), srv.secrets)))
			}
		}
	}
	fmt.Fprintf(w, "logscan: scanned %d bytes (%d lines) of logs from %d servers\n", bytesScanned, lines, len(servers))
	if len(servers) > 0 && bytesScanned == 0 {
		fmt.Fprintf(w, "logscan: FAIL: %d servers ran but no log byte was collected; the scan would pass vacuously\n", len(servers))
		return 1
	}
	if len(findings) == 0 {
		return 0
	}
	fmt.Fprintf(w, "logscan: FAIL: %d log lines carry secrets:\n", len(findings))
	for i, f := range findings {
		if i == 50 {
			fmt.Fprintf(w, "  ... and %d more\n", len(findings)-i)
			break
		}
		fmt.Fprintf(w, "  %s\n", f)
	}
	return 1
}

// leakPatterns are the shapes of secrets that must never be logged.
var leakPatterns = []struct {
	kind string
	re   *regexp.Regexp
}{
	{"Stripe secret/restricted key", regexp.MustCompile(`(?:^|[^0-9A-Za-z])(?:sk|rk)_(?:test|live)_[0-9A-Za-z]+`)},
	{"webhook secret", regexp.MustCompile(`whsec_[0-9A-Za-z_]+`)},
	{"JWT", regexp.MustCompile(`eyJ[0-9A-Za-z_-]+\.[0-9A-Za-z_-]+\.[0-9A-Za-z_-]*`)},
	{"client secret", regexp.MustCompile(`[0-9A-Za-z]_secret_[0-9A-Za-z]+`)},
	{"Authorization header", regexp.MustCompile(`(?i)authorization\W{0,4}bearer`)},
}

// cardRuns are digit runs that might be card numbers: 13 to 19 digits
// together, or in groups of four separated by spaces or hyphens, not part
// of a longer word (an id such as evt_123... is not a card).
var cardRuns = regexp.MustCompile(`(?:^|[^0-9A-Za-z_])(\d{13,19}|\d{4}(?: \d{4}){2} \d{1,7}|\d{4}(?:-\d{4}){2}-\d{1,7})(?:$|[^0-9A-Za-z_])`)

// findSecrets returns the kinds of secret in line.
func findSecrets(line string, secrets []string) []string {
	var kinds []string
	for _, p := range leakPatterns {
		if p.re.MatchString(line) {
			kinds = append(kinds, p.kind)
		}
	}
	if len(cardNumbers(line)) > 0 {
		kinds = append(kinds, "card number")
	}
	for _, s := range secrets {
		if strings.Contains(line, s) {
			kinds = append(kinds, "a configured secret value")
			break
		}
	}
	return kinds
}

// cardNumbers returns the Luhn-valid 13..19 digit numbers in line.
func cardNumbers(line string) []string {
	var out []string
	for _, m := range cardRuns.FindAllStringSubmatch(line, -1) {
		digits := strings.NewReplacer(" ", "", "-", "").Replace(m[1])
		if len(digits) >= 13 && len(digits) <= 19 && luhn(digits) {
			out = append(out, m[1])
		}
	}
	return out
}

func luhn(digits string) bool {
	sum := 0
	double := false
	for i := len(digits) - 1; i >= 0; i-- {
		d := int(digits[i] - '0')
		if double {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}

// redactLine replaces every secret in line, so that the failure report
// does not print what it found, and clips it.
func redactLine(line string, secrets []string) string {
	for _, s := range secrets {
		line = strings.ReplaceAll(line, s, "[REDACTED]")
	}
	for _, p := range leakPatterns {
		line = p.re.ReplaceAllString(line, "[REDACTED "+p.kind+"]")
	}
	for _, c := range cardNumbers(line) {
		line = strings.ReplaceAll(line, c, "[REDACTED card number]")
	}
	// Show the part of a long line around what was found.
	if len(line) > 600 {
		at := max(strings.Index(line, "[REDACTED")-200, 0)
		end := min(at+600, len(line))
		line = "..." + line[at:end] + "..."
	}
	return line
}

// TestLogScanFindsSecrets makes sure the scanner itself sees each kind of
// secret (a broken pattern would let the run pass without looking) and
// leaves ordinary log lines alone.
func TestLogScanFindsSecrets(t *testing.T) {
	configured := []string{"metrics-token-0123456789"}
	leaks := map[string]string{
		"Stripe secret key":     `level=WARN msg="stripe" key=sk_test_4eC39HqLyjWDarjtT1zdp7dc`,
		"live key":              `{"key":"sk_live_51Habc"}`,
		"restricted key":        `key=rk_test_51Habc`,
		"webhook secret":        `secret=whsec_test_secret_for_tests`,
		"JWT":                   `token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl`,
		"client secret":         `client_secret=pi_3Nabc_secret_xyz`,
		"Authorization header":  `header="Authorization: Bearer abc"`,
		"header map":            `headers=map[Authorization:[Bearer abc]]`,
		"card number":           `card=4242424242424242`,
		"card number in groups": `number="4000 0566 5566 5556"`,
		"card number hyphens":   `number=5555-5555-5555-4444`,
		"dev JWT secret":        `secret=` + DevJWTSecret,
		"configured secret":     `token=metrics-token-0123456789`,
	}
	for name, line := range leaks {
		secrets := append([]string{DevJWTSecret}, configured...)
		if kinds := findSecrets(line, secrets); len(kinds) == 0 {
			t.Errorf("%s not found in %q", name, line)
		}
		if red := redactLine(line, secrets); len(findSecrets(red, secrets)) > 0 {
			t.Errorf("%s: redacted line still has it: %q", name, red)
		}
	}
	clean := []string{
		`time=2026-01-02T03:04:05.678Z level=INFO msg=request method=POST path=/graphql status=200 code=OK operation=Me viewer=alice duration_ms=1.234 request_id=0b8f5e0e-2c1d-4a8e-9f3e-1d2c3b4a5f6e`,
		`level=INFO msg="webhook applied" event_id=evt_be_1767225600123456789_12 type=payment_intent.succeeded`,
		`level=INFO msg=starting config="{SecretKey:\"[redacted]\" WebhookSecrets:\"[redacted]\"}"`,
		`level=WARN msg="stripe error" request_id=req_stripefake_1234567890123456`,
		`level=INFO msg=request path=/webhooks/stripe status=400 network_test_x=1`,
		`amount=4242424242424241`, // not Luhn-valid
	}
	for _, line := range clean {
		if kinds := findSecrets(line, configured); len(kinds) > 0 {
			t.Errorf("false positive %v in %q", kinds, line)
		}
	}
}
