#!/usr/bin/env python3
"""Check a DCAT-AP JSON-LD catalogue export against the DCAT-AP 3.0.1 SHACL shapes.

usage: check_dcat.py [--strict] [--shapes DIR] EXPORT.jsonld

The export (e.g. `GET /api/v1/catalogue/export?format=dcat`) is loaded with rdflib and validated
with pyshacl, `inference="none"`:

  1. against shapes.ttl + range.ttl together: any sh:Violation fails (exit 1, report printed);
  2. the date typing that DCAT-AP 3.0.1 means but does not enforce: shapes.ttl attaches
     :DateOrDateTimeDataType_Shape to dct:issued / dct:modified of Dataset and CatalogRecord and to
     dcat:startDate / dcat:endDate of PeriodOfTime with `sh:shape`, which is not a SHACL term, so
     SHACL engines skip it; here it is applied as `sh:node` to those properties wherever they
     occur (xsd:date, xsd:dateTime, xsd:gYear or xsd:gYearMonth, well-formed): any failure fails;
  3. against shapes_recommended.ttl: results are printed as warnings; they fail only with
     --strict (exit 1).

Before that the JSON-LD itself is checked: its @context must be inline (the network is closed,
nothing may be fetched to expand it), every property and type must expand to an IRI (a term with
no prefix in the context is silently dropped by JSON-LD processors), and the graph must hold a
dcat:Catalog.

The shapes are read from DIR, by default ../schemas/vectors/dcat-ap relative to this script
(vendored in the repository, see schemas/vectors/README.md). Needs pyshacl (`pip install pyshacl`, which brings rdflib).

Exit status: 0 conforms; 1 violations (or warnings with --strict); 2 bad input or arguments;
3 pyshacl/rdflib missing.
"""

import argparse
import json
import logging
import sys
from pathlib import Path

SHAPE_FILES = ("shapes.ttl", "range.ttl", "shapes_recommended.ttl")
ABSOLUTE_SCHEMES = ("http", "https", "urn", "mailto", "tag")

# shapes.ttl's `sh:shape :DateOrDateTimeDataType_Shape`, as the `sh:node` it was meant to be.
DATE_SHAPES = """
@prefix sh: <http://www.w3.org/ns/shacl#> .
@prefix dct: <http://purl.org/dc/terms/> .
@prefix dcat: <http://www.w3.org/ns/dcat#> .
@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .
@prefix : <urn:check-dcat:> .

:DateOrDateTime a sh:NodeShape ;
    sh:message "The values must be typed xsd:date, xsd:dateTime, xsd:gYear or xsd:gYearMonth" ;
    sh:or ( [ sh:datatype xsd:date ] [ sh:datatype xsd:dateTime ]
            [ sh:datatype xsd:gYear ] [ sh:datatype xsd:gYearMonth ] ) .

:Dates a sh:NodeShape ;
    sh:targetSubjectsOf dct:issued, dct:modified, dcat:startDate, dcat:endDate ;
    sh:property [ sh:path dct:issued ; sh:node :DateOrDateTime ; sh:severity sh:Violation ],
                [ sh:path dct:modified ; sh:node :DateOrDateTime ; sh:severity sh:Violation ],
                [ sh:path dcat:startDate ; sh:node :DateOrDateTime ; sh:severity sh:Violation ],
                [ sh:path dcat:endDate ; sh:node :DateOrDateTime ; sh:severity sh:Violation ] .
"""


def default_shapes_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "schemas" / "vectors" / "dcat-ap"


def context_problems(doc) -> list:
    """Remote contexts and keys or types that would not expand to IRIs."""
    problems = []
    terms = set()

    def add_context(ctx, where):
        if isinstance(ctx, list):
            for c in ctx:
                add_context(c, where)
        elif isinstance(ctx, dict):
            terms.update(k for k in ctx if not k.startswith("@"))
        elif ctx is not None:
            problems.append(f"{where}: remote @context {ctx!r}: the context must be inline")

    def expands(name: str) -> bool:
        if name.startswith("@") or name in terms:
            return True
        prefix, colon, rest = name.partition(":")
        if not colon:
            return False
        return prefix in terms or prefix in ABSOLUTE_SCHEMES or rest.startswith("//")

    def walk(node, where):
        if isinstance(node, list):
            for i, n in enumerate(node):
                walk(n, f"{where}[{i}]")
            return
        if not isinstance(node, dict):
            return
        if "@context" in node:
            add_context(node["@context"], where)
        for key, value in node.items():
            if key == "@context":
                continue
            if not expands(key):
                problems.append(f"{where}: property {key!r} does not expand to an IRI")
            if key == "@type":
                for t in value if isinstance(value, list) else [value]:
                    if not isinstance(t, str) or not expands(t):
                        problems.append(f"{where}: type {t!r} does not expand to an IRI")
                continue
            walk(value, f"{where}.{key}")

    if isinstance(doc, dict) and "@context" not in doc:
        problems.append("$: no @context")
    walk(doc, "$")
    return problems


def results(graph, sh):
    """(severity local name, focus node, path, value, message) of each validation result."""
    out = []
    for r in set(graph.objects(None, sh.result)):
        sev = graph.value(r, sh.resultSeverity)
        out.append(
            (
                str(sev).rsplit("#", 1)[-1] if sev is not None else "Violation",
                graph.value(r, sh.focusNode),
                graph.value(r, sh.resultPath),
                graph.value(r, sh.value),
                graph.value(r, sh.resultMessage),
            )
        )
    return sorted(out, key=lambda x: tuple(str(v) for v in x))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description="Validate a DCAT-AP JSON-LD export against the DCAT-AP 3.0.1 SHACL shapes."
    )
    ap.add_argument("export", help="the JSON-LD file")
    ap.add_argument("--shapes", help="directory of shapes.ttl, range.ttl, shapes_recommended.ttl")
    ap.add_argument(
        "--strict", action="store_true", help="fail on warnings of shapes_recommended.ttl too"
    )
    args = ap.parse_args(argv)
    # Ill-typed literals are reported by the shapes; rdflib's own tracebacks add nothing.
    logging.getLogger("rdflib.term").setLevel(logging.CRITICAL)

    try:
        import pyshacl
        from pyshacl import validate
        from rdflib import RDF, Graph, Namespace
    except ImportError as e:
        print(f"check_dcat: {e}: install it with `pip install pyshacl`", file=sys.stderr)
        return 3

    shapes_dir = Path(args.shapes) if args.shapes else default_shapes_dir()
    missing = [f for f in SHAPE_FILES if not (shapes_dir / f).is_file()]
    if missing:
        print(
            f"check_dcat: {', '.join(missing)} not found in {shapes_dir} (use --shapes DIR)",
            file=sys.stderr,
        )
        return 2

    try:
        text = Path(args.export).read_text(encoding="utf-8")
        doc = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        print(f"check_dcat: cannot read {args.export}: {e}", file=sys.stderr)
        return 2
    problems = context_problems(doc)
    if problems:
        print(f"check_dcat: {args.export} is not self-contained JSON-LD:", file=sys.stderr)
        for p in problems[:50]:
            print(f"  {p}", file=sys.stderr)
        return 2

    DCAT = Namespace("http://www.w3.org/ns/dcat#")
    SH = Namespace("http://www.w3.org/ns/shacl#")
    data = Graph()
    try:
        data.parse(data=text, format="json-ld")
    except Exception as e:  # rdflib raises many kinds
        print(f"check_dcat: {args.export} is not valid JSON-LD: {e}", file=sys.stderr)
        return 2
    catalogs = len(set(data.subjects(RDF.type, DCAT.Catalog)))
    datasets = len(set(data.subjects(RDF.type, DCAT.Dataset)))
    if catalogs == 0:
        print(f"check_dcat: {args.export} holds no dcat:Catalog", file=sys.stderr)
        return 2
    print(
        f"check_dcat: {args.export}: {len(data)} triples, {catalogs} catalog(s), "
        f"{datasets} dataset(s); pyshacl {pyshacl.__version__}, shapes from {shapes_dir}"
    )

    core = Graph()
    core.parse(shapes_dir / "shapes.ttl", format="turtle")
    core.parse(shapes_dir / "range.ttl", format="turtle")
    dates = Graph()
    dates.parse(data=DATE_SHAPES, format="turtle")
    recommended = Graph()
    recommended.parse(shapes_dir / "shapes_recommended.ttl", format="turtle")

    failed = False
    for name, shapes, fatal in (
        ("shapes.ttl + range.ttl", core, lambda sev: sev == "Violation"),
        ("date typing (shapes.ttl's sh:shape as sh:node)", dates, lambda sev: True),
        ("shapes_recommended.ttl", recommended, lambda sev: args.strict),
    ):
        _, report, report_text = validate(
            data, shacl_graph=shapes, inference="none", abort_on_first=False, meta_shacl=False
        )
        found = results(report, SH)
        bad = [r for r in found if fatal(r[0])]
        counts = {}
        for r in found:
            counts[r[0]] = counts.get(r[0], 0) + 1
        summary = ", ".join(f"{n} {sev.lower()}(s)" for sev, n in sorted(counts.items()))
        print(f"{name}: {summary or 'no results'}{' (fails)' if bad else ''}")
        for sev, focus, path, value, message in found:
            print(f"  {sev}: {focus} {path} = {value}: {message}")
        if bad:
            failed = True
            print(report_text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
