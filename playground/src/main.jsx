// The admin playground: GraphiQL with a token bar above it. Everything is
// bundled by esbuild into server/playground and served by the API itself,
// so the page needs nothing from another origin.
import React, { useCallback, useEffect, useMemo, useRef, useState } from "react";
import { createRoot } from "react-dom/client";
import { GraphiQL } from "graphiql";
import { createGraphiQLFetcher } from "@graphiql/toolkit";
import { setNonce } from "get-nonce";

import "graphiql/style.css";
import "./app.css";
import { exampleTabs } from "./examples.js";

const TOKEN_KEY = "billing.playground.token";
const APPLY_DELAY_MS = 300;

// Styles that libraries add at run time (the scroll lock of GraphiQL's
// dialogs) carry the nonce the server put in the page's CSP.
const nonce = document.querySelector('meta[name="csp-nonce"]')?.content;
if (nonce) setNonce(nonce);

// normalizeToken accepts a bare JWT or a pasted "Bearer ..." value.
function normalizeToken(value) {
  return value.trim().replace(/^bearer\s+/i, "").trim();
}

function readStoredToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  } catch {
    return "";
  }
}

function storeToken(token) {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // Storage disabled: the token lives as long as the page.
  }
}

// describeToken reads a JWT's claims for display only: the server checks
// the signature; a token that does not decode is shown as such.
function describeToken(token) {
  if (!token) return { text: "anonymous: public fields only", kind: "none" };
  try {
    const part = token.split(".")[1];
    const json = atob(part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "="));
    const claims = JSON.parse(decodeURIComponent(escape(json)));
    const who = [claims.sub, claims.email && `<${claims.email}>`, claims.role === "admin" && "(platform admin)"]
      .filter(Boolean)
      .join(" ");
    if (typeof claims.exp === "number" && claims.exp * 1000 <= Date.now()) {
      return { text: `${who}: expired ${new Date(claims.exp * 1000).toLocaleString()}`, kind: "bad" };
    }
    const until = typeof claims.exp === "number" ? ` until ${new Date(claims.exp * 1000).toLocaleTimeString()}` : "";
    return { text: `signed in as ${who}${until}`, kind: "ok" };
  } catch {
    return { text: "not a JWT", kind: "bad" };
  }
}

function websocketURL() {
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${window.location.host}/graphql`;
}

// makeFetcher returns GraphiQL's fetcher for token: HTTP to /graphql with
// the Authorization header, subscriptions over the websocket with the same
// value in connection_init.
function makeFetcher(token) {
  const auth = token ? { Authorization: `Bearer ${token}` } : {};
  return createGraphiQLFetcher({
    url: "/graphql",
    subscriptionUrl: websocketURL(),
    headers: auth,
    wsConnectionParams: auth,
    // The API answers plain JSON (no multipart incremental delivery).
    enableIncrementalDelivery: false,
  });
}

function TokenBar({ token, onApply }) {
  const [draft, setDraft] = useState(token);
  const [shown, setShown] = useState(false);
  const timer = useRef(0);

  const apply = useCallback(
    (value) => {
      window.clearTimeout(timer.current);
      onApply(normalizeToken(value));
    },
    [onApply],
  );
  useEffect(() => () => window.clearTimeout(timer.current), []);

  const onChange = (e) => {
    const value = e.target.value;
    setDraft(value);
    window.clearTimeout(timer.current);
    timer.current = window.setTimeout(() => apply(value), APPLY_DELAY_MS);
  };
  const status = describeToken(token);

  return (
    <header className="bp-bar">
      <span className="bp-title">Billing API</span>
      <label className="bp-token">
        <span>Token</span>
        <input
          id="token"
          type={shown ? "text" : "password"}
          autoComplete="off"
          spellCheck={false}
          placeholder="paste a JWT (kept in this tab's session storage only)"
          value={draft}
          onChange={onChange}
          onBlur={() => apply(draft)}
          onKeyDown={(e) => e.key === "Enter" && apply(draft)}
        />
      </label>
      <button type="button" className="bp-button" onClick={() => setShown(!shown)} aria-pressed={shown}>
        {shown ? "Hide" : "Show"}
      </button>
      <button
        type="button"
        className="bp-button"
        onClick={() => {
          setDraft("");
          apply("");
        }}
        disabled={!draft}
      >
        Clear
      </button>
      <span id="token-status" className={`bp-status bp-status-${status.kind}`} aria-live="polite">
        {status.text}
      </span>
    </header>
  );
}

function App() {
  const [token, setToken] = useState(readStoredToken);
  const onApply = useCallback((value) => {
    storeToken(value);
    setToken(value);
  }, []);
  // A new token means a new fetcher: GraphiQL then fetches the schema again
  // and new subscriptions authenticate with it.
  const fetcher = useMemo(() => makeFetcher(token), [token]);

  return (
    <div className="bp-app">
      <TokenBar token={token} onApply={onApply} />
      <main className="bp-graphiql">
        <GraphiQL fetcher={fetcher} defaultTabs={exampleTabs} defaultEditorToolsVisibility={true} />
      </main>
    </div>
  );
}

createRoot(document.getElementById("root")).render(<App />);
