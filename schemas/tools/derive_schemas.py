#!/usr/bin/env python3
"""Derive standalone JSON Schema (draft 2020-12) files from the IDTA AAS OpenAPI files.

Reads Part2-API-Schemas/openapi.yaml and Part1-MetaModel-Schemas/openapi.yaml
(IDTA aas-specs-api v3.0.4) and writes, below schemas/:

  aas-v3.0/shell-descriptor.json     root = AssetAdministrationShellDescriptor
  aas-v3.0/submodel-descriptor.json  root = SubmodelDescriptor
  aas-v3.0/specific-asset-id.json    root = SpecificAssetId
  tools/pattern-pairs.json           every `pattern` of both files, original and translated

Each schema is self-contained: every referenced component is copied into "$defs"
and all references are rewritten to "#/$defs/Name" (a reference to the root
becomes "#").  OpenAPI 3.0 only keywords are dropped or converted.  Regex
patterns written with UTF-16 surrogate escapes are translated to code-point
classes (see translate_pattern).  Output is deterministic: sorted keys, 2-space
indent, trailing newline.

Usage:  python3 schemas/tools/derive_schemas.py [--spec-dir DIR] [--out-dir DIR] [--check]
Requires PyYAML (pip install pyyaml).
"""
from __future__ import annotations

import argparse
import json
import re
import string
import sys
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SPEC_DIR = REPO_ROOT / ".." / "shared" / "reference" / "aas-seed-data" / "aas-specs-api-v3.0.4"
SPEC_VERSION = "3.0.4"
ID_BASE = "https://twinlattice.dev/schemas/"

# The two OpenAPI documents; the SwaggerHub URLs they use to refer to each other.
DOCS = {
    "Part1": "Part1-MetaModel-Schemas/openapi.yaml",
    "Part2": "Part2-API-Schemas/openapi.yaml",
}
REMOTE_REF = re.compile(
    r"^https://api\.swaggerhub\.com/domains/Plattform_i40/(Part1-MetaModel-Schemas|Part2-API-Schemas)/V3\.0\.4"
    r"#/components/schemas/([A-Za-z0-9_]+)$"
)
LOCAL_REF = re.compile(r"^#/components/schemas/([A-Za-z0-9_]+)$")

OUTPUTS = [
    # (schema name = path under schemas/ without .json, document, root component, title)
    ("aas-v3.0/shell-descriptor", "Part2", "AssetAdministrationShellDescriptor", "AAS v3.0 AssetAdministrationShellDescriptor"),
    ("aas-v3.0/submodel-descriptor", "Part2", "SubmodelDescriptor", "AAS v3.0 SubmodelDescriptor"),
    ("aas-v3.0/specific-asset-id", "Part1", "SpecificAssetId", "AAS v3.0 SpecificAssetId"),
]

# Keywords copied unchanged (besides recursion into sub-schemas).
PLAIN_KEYWORDS = {
    "type", "enum", "const", "required", "description", "title", "default", "deprecated",
    "readOnly", "writeOnly", "minLength", "maxLength", "minItems", "maxItems", "uniqueItems",
    "minProperties", "maxProperties", "minimum", "maximum", "multipleOf", "format",
}
SCHEMA_LIST_KEYWORDS = {"allOf", "anyOf", "oneOf"}
SCHEMA_KEYWORDS = {"items", "not"}
DROPPED_KEYWORDS = {"example", "discriminator", "xml", "externalDocs"}


class DeriveError(Exception):
    pass


# --------------------------------------------------------------------------- regex translation
#
# The official patterns describe XML 1.0 "Char" over UTF-16 code units, e.g.
#   ^([\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd]|\ud800[\udc00-\udfff]|[\ud801-\udbfe][\udc00-\udfff]|\udbff[\udc00-\udfff])*$
# A group whose alternatives are either one BMP class or a (high surrogate)(low surrogate)
# pair matches exactly one code point, so it can be rewritten as one code-point class:
#   ^[\x09\x0A\x0D\x20-\u{D7FF}\u{E000}-\u{FFFD}\u{10000}-\u{10FFFF}]*$
# `\u{...}` is accepted by ECMA-262 in `u` mode, by regex-syntax (the parser jsonschema
# uses to pre-process ECMA patterns), by fancy-regex (jsonschema's default engine) and by
# the regex crate (its optional engine).  `\x{...}` would be Rust-only.

SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
SIMPLE_ESCAPES = {"t": 0x09, "n": 0x0A, "r": 0x0D, "f": 0x0C, "v": 0x0B}
# Characters that may be escaped with a backslash in ECMA-262 `u` mode (identity escapes).
U_MODE_IDENTITY = set("^$\\.*+?()[]{}|/")


def _parse_unit(p: str, i: int) -> tuple[int, int]:
    """Parse one UTF-16 code unit (escape or literal) at p[i]; return (unit, next index)."""
    if p[i] != "\\":
        if ord(p[i]) > 0xFFFF:
            raise DeriveError(f"astral literal in surrogate group: {p!r}")
        return ord(p[i]), i + 1
    c = p[i + 1]
    if c == "x" and re.fullmatch(r"[0-9a-fA-F]{2}", p[i + 2:i + 4]):
        return int(p[i + 2:i + 4], 16), i + 4
    if c == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", p[i + 2:i + 6]):
        return int(p[i + 2:i + 6], 16), i + 6
    if c in SIMPLE_ESCAPES:
        return SIMPLE_ESCAPES[c], i + 2
    if c.isalnum():
        raise DeriveError(f"unsupported escape \\{c} in surrogate group: {p!r}")
    return ord(c), i + 2


def _parse_atom(p: str, i: int) -> tuple[list[tuple[int, int]], int]:
    """Parse a class `[...]` or a single unit; return (list of unit ranges, next index)."""
    if p[i] != "[":
        u, i = _parse_unit(p, i)
        return [(u, u)], i
    i += 1
    if p[i] == "^":
        raise DeriveError(f"negated class in surrogate group: {p!r}")
    ranges = []
    while p[i] != "]":
        lo, i = _parse_unit(p, i)
        hi = lo
        if p[i] == "-" and p[i + 1] != "]":
            hi, i = _parse_unit(p, i + 1)
        ranges.append((lo, hi))
    return ranges, i + 1


def _inside(ranges, lo, hi) -> bool:
    return all(lo <= a and b <= hi for a, b in ranges)


def _merge(ranges):
    out = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _group_to_codepoints(body: str, pattern: str) -> list[tuple[int, int]]:
    """Code-point ranges matched by a group of BMP classes and surrogate pairs."""
    alternatives, atoms, i = [], [], 0
    while i < len(body):
        if body[i] == "|":
            alternatives.append(atoms)
            atoms, i = [], i + 1
            continue
        if body[i] in "*+?{()":
            raise DeriveError(f"unsupported construct {body[i]!r} in surrogate group: {pattern!r}")
        ranges, i = _parse_atom(body, i)
        atoms.append(ranges)
    alternatives.append(atoms)

    result = []
    for alt in alternatives:
        if len(alt) == 1 and all(b < 0xD800 or a > 0xDFFF for a, b in alt[0]):
            result.extend(alt[0])  # plain BMP code units == code points
        elif len(alt) == 2 and _inside(alt[0], 0xD800, 0xDBFF) and _inside(alt[1], 0xDC00, 0xDFFF):
            highs, lows = alt
            for h1, h2 in highs:
                if _merge(lows) == [(0xDC00, 0xDFFF)]:  # every low surrogate: one contiguous block
                    result.append((_pair(h1, 0xDC00), _pair(h2, 0xDFFF)))
                    continue
                if (h2 - h1 + 1) * len(lows) > 256:
                    raise DeriveError(f"surrogate group too irregular to translate: {pattern!r}")
                for h in range(h1, h2 + 1):
                    result.extend((_pair(h, l1), _pair(h, l2)) for l1, l2 in lows)
        else:
            raise DeriveError(f"alternative is neither a BMP class nor a surrogate pair: {pattern!r}")
    return _merge(result)


def _pair(high: int, low: int) -> int:
    return 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)


def _cp(c: int) -> str:
    if chr(c).isascii() and chr(c).isalnum():
        return chr(c)
    return f"\\x{c:02X}" if c <= 0xFF else f"\\u{{{c:X}}}"


def _class(ranges) -> str:
    # a range of one or two code points is written as single members: [\x09\x0A] not [\x09-\x0A]
    return "[" + "".join(
        "".join(map(_cp, range(a, b + 1))) if b - a < 2 else f"{_cp(a)}-{_cp(b)}" for a, b in ranges
    ) + "]"


def _fix_identity_escapes(p: str) -> str:
    """Drop backslashes that ECMA-262 `u` mode rejects (e.g. `\\"`); the meaning is unchanged."""
    out, i, in_class = [], 0, False
    while i < len(p):
        c = p[i]
        if c == "\\" and i + 1 < len(p):
            n = p[i + 1]
            drop = n in string.punctuation and n not in U_MODE_IDENTITY and not (in_class and n == "-")
            out.append(n if drop else c + n)
            i += 2
            continue
        if c == "[" and not in_class:
            in_class = True
        elif c == "]" and in_class:
            in_class = False
        out.append(c)
        i += 1
    return "".join(out)


GROUP = re.compile(r"(?<!\\)\((\?:)?((?:[^()\\]|\\.)*)\)")


def translate_pattern(p: str) -> str:
    """Translate a UTF-16 (non-`u`) ECMA pattern into an equivalent code-point pattern."""
    if re.search(r"\\[1-9]|\\k<", p):
        raise DeriveError(f"backreferences are not supported: {p!r}")

    def repl(m: re.Match) -> str:
        body = m.group(2)
        if not SURROGATE_ESCAPE.search(body):
            return m.group(0)
        return _class(_group_to_codepoints(body, p))

    out = _fix_identity_escapes(GROUP.sub(repl, p))
    if SURROGATE_ESCAPE.search(out) or any(0xD800 <= ord(c) <= 0xDFFF for c in out):
        raise DeriveError(f"pattern still contains surrogates after translation: {p!r} -> {out!r}")
    return out


# --------------------------------------------------------------------------- schema conversion


class Deriver:
    def __init__(self, spec_dir: Path):
        self.docs = {}
        for key, rel in DOCS.items():
            path = spec_dir / rel
            if not path.is_file():
                raise DeriveError(f"missing OpenAPI file: {path}")
            with path.open(encoding="utf-8") as f:
                self.docs[key] = yaml.safe_load(f)
        self.patterns: dict[str, str] = {}  # original -> translated

    def component(self, doc: str, name: str):
        try:
            return self.docs[doc]["components"]["schemas"][name]
        except KeyError:
            raise DeriveError(f"unknown component {doc}#/components/schemas/{name}") from None

    def resolve(self, doc: str, ref: str) -> tuple[str, str]:
        m = LOCAL_REF.match(ref)
        if m:
            return doc, m.group(1)
        m = REMOTE_REF.match(ref)
        if m:
            return ("Part1" if m.group(1).startswith("Part1") else "Part2"), m.group(2)
        raise DeriveError(f"cannot resolve $ref {ref!r} (only V{SPEC_VERSION} Part1/Part2 components)")

    def pattern(self, p: str) -> str:
        if p not in self.patterns:
            self.patterns[p] = translate_pattern(p)
        return self.patterns[p]

    def convert(self, node, doc: str, todo: list, root: tuple[str, str]):
        """Convert one OpenAPI schema object into JSON Schema 2020-12."""
        if not isinstance(node, dict):
            raise DeriveError(f"schema is not an object: {node!r}")
        if "$ref" in node:
            if len(node) != 1:
                # OpenAPI 3.0 ignores $ref siblings, JSON Schema 2020-12 applies them.
                raise DeriveError(f"$ref with sibling keywords: {node!r}")
            target = self.resolve(doc, node["$ref"])
            if target == root:
                return {"$ref": "#"}
            todo.append(target)
            return {"$ref": f"#/$defs/{target[1]}"}
        out = {}
        for key, value in node.items():
            if key in DROPPED_KEYWORDS or key.startswith("x-"):
                continue
            if key == "nullable":
                continue  # handled below
            if key == "pattern":
                out[key] = self.pattern(value)
            elif key == "format" and value == "byte":
                out["contentEncoding"] = "base64"  # OpenAPI "byte" = base64 data
            elif key in PLAIN_KEYWORDS:
                out[key] = value
            elif key in SCHEMA_LIST_KEYWORDS:
                out[key] = [self.convert(v, doc, todo, root) for v in value]
            elif key in SCHEMA_KEYWORDS:
                out[key] = self.convert(value, doc, todo, root)
            elif key == "properties":
                out[key] = {k: self.convert(v, doc, todo, root) for k, v in value.items()}
            elif key == "additionalProperties":
                out[key] = value if isinstance(value, bool) else self.convert(value, doc, todo, root)
            else:
                raise DeriveError(f"unhandled OpenAPI keyword {key!r} in {doc}")
        if node.get("nullable") is True:
            if "type" not in out:
                return {"anyOf": [out, {"type": "null"}]}
            out["type"] = [out["type"], "null"]
        return out

    def derive(self, name: str, doc: str, root_name: str, title: str) -> dict:
        root = (doc, root_name)
        todo: list[tuple[str, str]] = []
        body = self.convert(self.component(doc, root_name), doc, todo, root)
        defs: dict[str, dict] = {}
        origin: dict[str, str] = {}
        while todo:
            d, n = todo.pop()
            if n in origin:
                if origin[n] != d:
                    raise DeriveError(f"component name {n} exists in both Part1 and Part2")
                continue
            origin[n] = d
            converted = self.convert(self.component(d, n), d, todo, root)
            converted["$comment"] = f"{DOCS[d].split('/')[0]} V{SPEC_VERSION} #/components/schemas/{n}"
            defs[n] = converted
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"{ID_BASE}{name}.json",
            "title": title,
            "description": (
                f"{root_name} as defined by IDTA AAS Part 2 API v{SPEC_VERSION} "
                f"({DOCS[doc]}, #/components/schemas/{root_name}). Derived from IDTA AAS Part 2 API "
                f"v{SPEC_VERSION} by schemas/tools/derive_schemas.py - do not edit by hand. "
                "OpenAPI-only keywords (example, nullable, discriminator, xml) were dropped or converted and "
                "UTF-16 surrogate-pair regex patterns were rewritten as equivalent code-point classes."
            ),
        }
        schema.update(body)
        if defs:
            schema["$defs"] = defs
        return schema

    def all_patterns(self) -> list[str]:
        found = set()

        def walk(n):
            if isinstance(n, dict):
                for k, v in n.items():
                    if k == "pattern" and isinstance(v, str):
                        found.add(v)
                    else:
                        walk(v)
            elif isinstance(n, list):
                for v in n:
                    walk(v)

        walk(self.docs)
        return sorted(found)


def render(obj) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=True) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spec-dir", type=Path, default=DEFAULT_SPEC_DIR,
                    help="folder holding Part1-MetaModel-Schemas/ and Part2-API-Schemas/ (default: %(default)s)")
    ap.add_argument("--out-dir", type=Path, default=REPO_ROOT / "schemas", help="default: %(default)s")
    ap.add_argument("--check", action="store_true", help="do not write; exit 1 if any output is out of date")
    args = ap.parse_args(argv)

    try:
        deriver = Deriver(args.spec_dir)
        files = {}
        used_in: dict[str, list[str]] = {}
        for name, doc, root_name, title in OUTPUTS:
            schema = deriver.derive(name, doc, root_name, title)
            files[f"{name}.json"] = render(schema)
            for p in _patterns_of(schema):
                used_in.setdefault(p, []).append(name)
        pairs = [
            {"original": p, "translated": deriver.pattern(p),
             "usedIn": sorted(set(used_in.get(deriver.pattern(p), [])))}
            for p in deriver.all_patterns()
        ]
        files["tools/pattern-pairs.json"] = render({
            "description": (
                "Every regex pattern found in the IDTA AAS v3.0.4 Part1/Part2 OpenAPI files and its translation by "
                "schemas/tools/derive_schemas.py. original: UTF-16 code-unit semantics (ECMA-262 without the u flag); "
                "translated: code-point semantics (ECMA-262 u flag, Rust regex / fancy-regex). "
                "usedIn: the derived schemas that contain the translated pattern. Checked by tests/regex_equivalence.mjs."
            ),
            "pairs": pairs,
        })
    except DeriveError as e:
        print(f"derive_schemas: ERROR: {e}", file=sys.stderr)
        return 1

    stale = []
    for rel, text in sorted(files.items()):
        path = args.out_dir / rel
        old = path.read_text(encoding="utf-8") if path.is_file() else None
        if old == text:
            continue
        stale.append(rel)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    verb = "out of date" if args.check else "written"
    print(f"derive_schemas: {len(files)} files, {len(stale)} {verb}" + (f": {', '.join(stale)}" if stale else ""))
    return 1 if (args.check and stale) else 0


def _patterns_of(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "pattern" and isinstance(v, str):
                yield v
            else:
                yield from _patterns_of(v)
    elif isinstance(node, list):
        for v in node:
            yield from _patterns_of(v)


if __name__ == "__main__":
    sys.exit(main())
