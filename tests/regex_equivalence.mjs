#!/usr/bin/env node
// Proves that the regex translation done by schemas/tools/derive_schemas.py keeps the meaning.
//
// The official AAS OpenAPI patterns are written for UTF-16 code units (an ECMA-262 RegExp
// WITHOUT the `u` flag: astral characters are matched as surrogate pairs). The derived
// schemas use code-point patterns (ECMA-262 WITH the `u` flag, which is also what Rust
// `regex` / `fancy-regex` implement). For every {original, translated} pair in
// schemas/tools/pattern-pairs.json and every probe string, both must give the same answer.
//
// Also checked: every `pattern:` of the two OpenAPI files is listed in pattern-pairs.json, and
// every pattern used by a derived schema under schemas/aas-v3.0/ is a tested `translated`.
//
// Usage: node tests/regex_equivalence.mjs [--spec-dir DIR]     (node >= 20, no packages)
// Exit 0 with a one-line summary, 1 with a message on the first problems found.

import { existsSync, readFileSync, readdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const argIx = process.argv.indexOf("--spec-dir");
const specDir = argIx > 0 ? resolve(process.argv[argIx + 1])
  : process.env.TWINLATTICE_AAS_SPEC_DIR ? resolve(process.env.TWINLATTICE_AAS_SPEC_DIR)
  : resolve(repo, "../shared/reference/aas-seed-data/aas-specs-api-v3.0.4");

const problems = [];
const fail = (msg) => { if (!problems.includes(msg)) problems.push(msg); };

const { pairs } = JSON.parse(readFileSync(join(repo, "schemas/tools/pattern-pairs.json"), "utf8"));

// --- probes ---------------------------------------------------------------------------------
const cp = (n) => String.fromCodePoint(n);
const named = [
  "", "abc", "Hello World", "a\tb\nc\rd", "\t", "\n", "\r",
  // control characters the XML Char production forbids
  ...[0, 1, 2, 3, 4, 5, 6, 7, 8, 0x0b, 0x0c, 0x0e, 0x1f].map(cp), "ok\u0000", "\u000bx",
  // edges of the allowed ranges
  cp(0x20), cp(0x7e), cp(0x7f), cp(0x80), cp(0xff), cp(0x100),
  cp(0xd7ff), cp(0xe000), cp(0xfffd), cp(0xfffe), cp(0xffff), cp(0x10000), cp(0x10ffff),
  cp(0x103ff), cp(0x10400), cp(0x10fbff), cp(0x10fc00),
  // lone / misordered surrogates (only representable in JS strings, never in Rust &str)
  "\ud800", "\udbff", "\udc00", "\udfff", "a\ud800", "\ud800b", "\udc00\ud800", "x\ud83dy",
  // BMP and astral text
  "Grüße, 世界", "\u{1d518}", "urn:example:\u{1d518}\u{1f600}", "\u{1f600}\u{1f680}\u{1f30d}",
  "\u{1f468}\u200d\u{1f469}\u200d\u{1f467}", "\ufeffBOM",
  // strings for the non-character-class patterns (language tags, dates, media types, ...)
  "en", "de-DE", "zh-Hant-TW", "x-private", "i-klingon", "en-GB-oed", "123", "e",
  "0", "1", "10", "01", "2024-02-29T23:59:59Z", "2024-02-29T24:00:00.000+00:00", "2024-13-01T00:00:00Z",
  "P1Y2M3DT4H5M6.7S", "PT", "-P1D", "text/plain", "text/plain; charset=\"utf-8\"", "application/json;q=0.9",
  "a/b; c=\"\u00e9\"", "Blob", "^Blob$", "idShort_1", "1abc", "a.b[0]", "a.b[01]", "Property", "DataSpecificationIec61360",
];
const probes = [...named];
// every single UTF-16 code unit (covers all BMP code points and every lone surrogate)
for (let u = 0; u <= 0xffff; u++) probes.push(String.fromCharCode(u));
// surrogate pairs at the block edges, in and out of order
for (const hi of [0xd800, 0xd801, 0xd83d, 0xdbfe, 0xdbff]) {
  for (const lo of [0xdc00, 0xdc01, 0xde00, 0xdffe, 0xdfff]) {
    probes.push(String.fromCharCode(hi, lo), String.fromCharCode(lo, hi), "ab" + String.fromCharCode(hi, lo) + "\t");
  }
}

// --- equivalence ----------------------------------------------------------------------------
const show = (s) => JSON.stringify(s).replace(/[\u0080-\uffff]/g, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
let checks = 0;
for (const { original, translated } of pairs) {
  let o, t;
  try { o = new RegExp(original); } catch (e) { fail(`original does not compile without u flag: ${original}\n  ${e.message}`); continue; }
  try { t = new RegExp(translated, "u"); } catch (e) { fail(`translated does not compile with u flag: ${translated}\n  ${e.message}`); continue; }
  if (/\\u[dD][89a-fA-F][0-9a-fA-F]{2}/.test(translated)) fail(`translated still has surrogate escapes: ${translated}`);
  let bad = 0;
  for (const s of probes) {
    checks++;
    const a = o.test(s), b = t.test(s);
    if (a !== b && bad++ < 5) {
      fail(`DISAGREE on ${show(s)}: original(no u)=${a} translated(u)=${b}\n  original:   ${original}\n  translated: ${translated}`);
    }
  }
}

// --- coverage: YAML patterns -> pairs -> derived schemas ---------------------------------------
// Tiny decoder for YAML double-/single-quoted scalars (the only escapes the files use).
const unquote = (raw) => raw.startsWith("'")
  ? raw.slice(1, -1).replace(/''/g, "'")
  : raw.slice(1, -1).replace(/\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|.)/g, (_, e) =>
      e.length > 1 ? String.fromCharCode(parseInt(e.slice(1), 16)) : ({ n: "\n", t: "\t", r: "\r", 0: "\0" }[e] ?? e));
const originals = new Set(pairs.map((p) => p.original));
// The official files are not in the repository: the coverage of the YAML's
// patterns is checked where they are on the machine; the equivalence of
// every committed pair is checked always.
const specFiles = ["Part1-MetaModel-Schemas/openapi.yaml", "Part2-API-Schemas/openapi.yaml"];
const haveSpec = specFiles.every((rel) => existsSync(join(specDir, rel)));
if (!haveSpec) console.log(`regex_equivalence: NOTE: ${specDir} not found; YAML pattern coverage not checked`);
for (const rel of haveSpec ? specFiles : []) {
  const text = readFileSync(join(specDir, rel), "utf8");
  for (const m of text.matchAll(/^\s*(?:- )?pattern:\s*("(?:[^"\\]|\\.)*"|'(?:[^']|'')*')\s*$/gm)) {
    const p = unquote(m[1]);
    if (!originals.has(p)) fail(`pattern in ${rel} missing from pattern-pairs.json: ${p}`);
  }
}
const translatedSet = new Set(pairs.map((p) => p.translated));
const walk = (node, file) => {
  if (Array.isArray(node)) node.forEach((n) => walk(n, file));
  else if (node && typeof node === "object") {
    for (const [k, v] of Object.entries(node)) {
      if (k === "pattern" && typeof v === "string") {
        if (!translatedSet.has(v)) fail(`${file}: pattern not covered by pattern-pairs.json: ${v}`);
      } else walk(v, file);
    }
  }
};
const schemaDir = join(repo, "schemas/aas-v3.0");
for (const f of readdirSync(schemaDir).filter((f) => f.endsWith(".json"))) {
  walk(JSON.parse(readFileSync(join(schemaDir, f), "utf8")), `schemas/aas-v3.0/${f}`);
}

if (problems.length) {
  console.error(`regex_equivalence: FAILED (${problems.length} problem(s))\n` + problems.slice(0, 40).join("\n"));
  process.exit(1);
}
console.log(`regex_equivalence: OK - ${pairs.length} pattern pairs x ${probes.length} probes = ${checks} checks, original (UTF-16, no u flag) and translated (code points, u flag) agree`);
