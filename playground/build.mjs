// Builds the admin playground into ../server/playground, which the Go
// binary embeds: one minified JS bundle (playground.js: GraphiQL, React and
// our token bar), one CSS file (style.css), the fonts and images GraphiQL's
// CSS inlines (moved to files, so the CSP needs no data: URLs), a favicon
// and index.html. index.html asks for playground.js and style.css with
// ?v=<hash of the content>, and the other files carry that hash in their
// names, so the server can let browsers cache them for good (it computes
// the same hash: the first 10 hex digits of the SHA-256). Run with
// `make playground`.
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "server", "playground");

const hash = (content) => createHash("sha256").update(content).digest("hex").slice(0, 10);
const hashName = (name, ext, content) => `${name}.${hash(content)}.${ext}`;

const result = await esbuild.build({
  entryPoints: { playground: join(here, "src", "main.jsx") },
  bundle: true,
  minify: true,
  format: "iife",
  platform: "browser",
  target: ["es2020", "chrome100", "firefox100", "safari15"],
  jsx: "automatic",
  define: { "process.env.NODE_ENV": '"production"' },
  legalComments: "eof",
  outdir: "out",
  write: false,
  logLevel: "warning",
});

const files = new Map(); // name -> content
const names = {};
for (const f of result.outputFiles) {
  let content = Buffer.from(f.contents);
  const ext = f.path.endsWith(".css") ? "css" : "js";
  if (ext === "css") {
    // GraphiQL's CSS inlines its fonts and a few images as data: URLs;
    // serve them as files instead, so the CSP allows no data: sources.
    let css = content.toString("utf8");
    css = css.replace(/url\((["']?)data:([a-z]+)\/([a-z0-9.+-]+);base64,([A-Za-z0-9+/=]+)\1\)/g, (m, _q, kind, sub, b64) => {
      const ext = { "font/woff2": "woff2", "font/woff": "woff", "image/png": "png", "image/svg+xml": "svg" }[`${kind}/${sub}`];
      if (!ext) throw new Error(`the CSS inlines an unexpected ${kind}/${sub}`);
      const data = Buffer.from(b64, "base64");
      const name = hashName(kind === "font" ? "font" : "img", ext, data);
      files.set(name, data);
      return `url(${name})`;
    });
    if (/url\(\s*["']?\s*(data:|[a-z]+:|\/\/)/i.test(css)) {
      throw new Error("the CSS still refers to a data: or external URL");
    }
    content = Buffer.from(css, "utf8");
  }
  const name = ext === "css" ? "style.css" : "playground.js";
  files.set(name, content);
  names[name] = `${name}?v=${hash(content)}`;
}

const favicon = readFileSync(join(here, "src", "favicon.svg"));
names["favicon.svg"] = hashName("favicon", "svg", favicon);
files.set(names["favicon.svg"], favicon);

// {{NONCE}} stays: the server replaces it per request.
const html = readFileSync(join(here, "src", "index.html"), "utf8").replace(/\{\{([a-z.]+)\}\}/g, (m, key) => {
  if (key === "NONCE") return m;
  if (!names[key]) throw new Error(`index.html: unknown asset ${key}`);
  return names[key];
});
files.set("index.html", Buffer.from(html, "utf8"));

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
for (const [name, content] of files) writeFileSync(join(out, name), content);

for (const name of readdirSync(out).sort()) {
  const size = files.get(name).length;
  console.log(`${name.padEnd(32)} ${(size / 1024).toFixed(1).padStart(8)} KiB`);
}
