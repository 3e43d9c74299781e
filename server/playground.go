package main

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"io"
	"io/fs"
	"net/http"
	"path"
	"regexp"
	"strings"
	"sync"
)

// The admin playground: GraphiQL bundled by `make playground` (sources in
// playground/ at the repository root) into server/playground, and embedded
// here so that the page works offline and under a strict CSP. The built
// assets are committed: building and testing the server never needs Node.
//
//go:embed playground
var playgroundFiles embed.FS

// playgroundIndex is the page; {{NONCE}} is replaced per request.
var playgroundIndex = mustReadPlayground("playground/index.html")

func mustReadPlayground(name string) []byte {
	b, err := fs.ReadFile(playgroundFiles, name)
	if err != nil {
		panic("playground: " + err.Error())
	}
	return b
}

// playgroundHashes returns each embedded file's content hash as `make
// playground` computes it (the first 10 hex digits of its SHA-256). The
// page asks for playground.js and style.css with ?v=<hash>, and the other
// assets carry the hash in their names: such a URL never changes content,
// so browsers may keep it for good. Any other request revalidates by ETag.
//
// The hashes are computed at the first asset request, not at start-up:
// hashing reads all 1.6 MB of assets, whose pages a server whose
// playground is never opened should not fault in, and each file is
// streamed through the hash rather than copied.
var playgroundHashes = sync.OnceValue(hashPlayground)

func hashPlayground() map[string]string {
	hashes := map[string]string{}
	err := fs.WalkDir(playgroundFiles, "playground", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		f, err := playgroundFiles.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			return err
		}
		hashes[name] = hex.EncodeToString(h.Sum(nil))[:10]
		return nil
	})
	if err != nil {
		panic("playground: " + err.Error())
	}
	return hashes
}

// playgroundTypes are content types Go's mime table may not know (it reads
// the system's, and a distroless image has none).
var playgroundTypes = map[string]string{
	".woff2": "font/woff2",
	".woff":  "font/woff",
}

// playgroundHost matches a Host header that is safe to put in the CSP.
var playgroundHost = regexp.MustCompile(`^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?$`)

// playgroundCSP allows only our own assets: the page works offline and
// cannot be made to load or post anything elsewhere. connect-src names the
// websocket of this host too, as 'self' does not cover ws:/wss: in every
// browser. Styles that libraries insert at run time (the scroll lock of
// GraphiQL's dialogs) must carry the page's nonce; there is no
// 'unsafe-inline' and no 'unsafe-eval'.
func playgroundCSP(host, nonce string) string {
	connect := "connect-src 'self'"
	if playgroundHost.MatchString(host) {
		connect += " ws://" + host + " wss://" + host
	}
	style := "style-src 'self'"
	if nonce != "" {
		style += " 'nonce-" + nonce + "'"
	}
	return strings.Join([]string{
		"default-src 'none'",
		"script-src 'self'",
		style,
		connect,
		"font-src 'self'",
		"img-src 'self'",
		"manifest-src 'none'",
		"worker-src 'none'",
		"object-src 'none'",
		"base-uri 'none'",
		"form-action 'none'",
		"frame-ancestors 'none'",
	}, "; ")
}

// setPlaygroundHeaders sets the security headers every playground response
// carries.
func setPlaygroundHeaders(w http.ResponseWriter, r *http.Request, nonce string) {
	h := w.Header()
	h.Set("Content-Security-Policy", playgroundCSP(r.Host, nonce))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
}

// servePlayground serves the admin playground page with a fresh CSP nonce.
func servePlayground(w http.ResponseWriter, r *http.Request) {
	nonce := newNonce()
	setPlaygroundHeaders(w, r, nonce)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	// The page names the hashed assets of this build: always revalidate.
	w.Header().Set("Cache-Control", "no-cache")
	page := bytes.ReplaceAll(playgroundIndex, []byte("{{NONCE}}"), []byte(nonce))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(page)
	}
}

// servePlaygroundAsset serves one embedded asset under /playground/:
// versioned URLs are cached for a year, anything else is revalidated; no
// directory listings.
func servePlaygroundAsset(w http.ResponseWriter, r *http.Request) {
	setPlaygroundHeaders(w, r, "")
	name := path.Clean(strings.TrimPrefix(r.URL.Path, "/"))
	if name == "playground/index.html" {
		http.Redirect(w, r, "/", http.StatusMovedPermanently)
		return
	}
	if info, err := fs.Stat(playgroundFiles, name); err != nil || info.IsDir() || !strings.HasPrefix(name, "playground/") {
		http.NotFound(w, r)
		return
	}
	sum := playgroundHashes()[name]
	if r.URL.Query().Get("v") == sum || strings.HasSuffix(path.Base(name), "."+sum+path.Ext(name)) {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		w.Header().Set("Cache-Control", "no-cache")
	}
	w.Header().Set("ETag", `"`+sum+`"`)
	if t, ok := playgroundTypes[path.Ext(name)]; ok {
		w.Header().Set("Content-Type", t)
	}
	http.ServeFileFS(w, r, playgroundFiles, name)
}

// newNonce returns 128 random bits for a CSP nonce.
func newNonce() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
