package main

import (
	"embed"
	"net/http"
)

//go:embed playground
var playgroundFiles embed.FS

// playgroundCSP allows only our own assets: the page works offline and
// cannot be made to load or post anything elsewhere.
const playgroundCSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// servePlayground serves the admin playground page and its assets, all
// embedded in the binary.
func servePlayground(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Security-Policy", playgroundCSP)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.ServeFileFS(w, r, playgroundFiles, "playground/index.html")
}

// servePlaygroundAsset serves one embedded asset under /playground/.
func servePlaygroundAsset(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Security-Policy", playgroundCSP)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	http.FileServerFS(playgroundFiles).ServeHTTP(w, r)
}
