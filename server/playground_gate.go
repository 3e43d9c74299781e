package main

import (
	"embed"
	"encoding/json"
	"io"
	"net/http"
	"time"
)

// In production the playground is for platform admins. A browser cannot
// send a bearer token when it navigates, so the page is gated by a cookie:
// the sign-in page posts an admin's token once, and the server sets it as
// an HttpOnly, Secure, SameSite=Strict cookie, valid while the token is
// (an hour at most). Every page and asset request checks it with the same
// verifier as the API. /graphql never reads cookies, so the cookie cannot
// authenticate a forged cross-site request.

//go:embed signin
var signinFiles embed.FS

// playgroundCookie names the playground's session cookie.
const playgroundCookie = "billing_playground"

// playgroundGate serves next to platform admins with a valid playground
// cookie, and the sign-in page (or 403 for assets) to everyone else. In
// development it lets everyone through.
func (m *Main) playgroundGate(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !m.Config.Production() || m.playgroundAdmin(r) {
			next(w, r)
			return
		}
		if r.URL.Path != "/" {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		setPlaygroundHeaders(w, r, "")
		w.Header().Set("Cache-Control", "no-store")
		http.ServeFileFS(w, r, signinFiles, "signin/index.html")
	}
}

// playgroundAdmin reports whether the request carries a platform admin's
// valid token in the playground cookie.
func (m *Main) playgroundAdmin(r *http.Request) bool {
	c, err := r.Cookie(playgroundCookie)
	if err != nil || c.Value == "" {
		return false
	}
	v, err := m.Verifier.Verify(c.Value)
	return err == nil && v.Admin
}

// servePlaygroundSignin serves the sign-in page's script.
func servePlaygroundSignin(w http.ResponseWriter, r *http.Request) {
	setPlaygroundHeaders(w, r, "")
	w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	http.ServeFileFS(w, r, signinFiles, "signin/signin.js")
}

// playgroundSession checks a posted token and, for a platform admin, sets
// the playground cookie: 204; 401 for a bad token, 403 for anyone else.
func (m *Main) playgroundSession(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 16<<10)).Decode(&in); err != nil {
		writeError(w, http.StatusBadRequest, "BAD_REQUEST", "Send {\"token\": \"...\"}.")
		return
	}
	v, err := m.Verifier.Verify(in.Token)
	if err != nil {
		writeError(w, http.StatusUnauthorized, "UNAUTHENTICATED", "Your token is invalid or has expired.")
		return
	}
	if !v.Admin {
		writeError(w, http.StatusForbidden, "FORBIDDEN", "The playground is for platform admins.")
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: playgroundCookie, Value: in.Token, Path: "/",
		MaxAge: int(time.Hour.Seconds()), HttpOnly: true, Secure: m.Config.Production(), SameSite: http.SameSiteStrictMode,
	})
	w.WriteHeader(http.StatusNoContent)
}
