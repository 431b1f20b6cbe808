#!/usr/bin/env python3
"""check_exports.py - libprism.so exports exactly the functions of prism.h.

The shared library is the product's one boundary: a symbol it exports is
one a program can come to depend on, so it must be documented in
include/prism.h, and every function documented there must be reachable.
The library is built with hidden visibility and marks its interface with
PRISM_API; this test compares the two sets, names both differences and
also fails when a function of the header lacks PRISM_API.

Usage: check_exports.py --cc CC --header include/prism.h --library SO
"""
import argparse
import re
import subprocess
import sys

# Symbols the linker defines in every shared library.
LINKER_SYMBOLS = {"__bss_start", "_edata", "_end", "_init", "_fini"}
MARK = "__attribute__((visibility(\"default\")))"


def header_text(cc, header):
    """The header's own lines after preprocessing as the library sees it
    (PRISM_API expanded), without the system headers it includes."""
    out = subprocess.run([cc, "-E", "-DPRISM_BUILDING_LIBRARY", header],
                         capture_output=True, text=True, check=True).stdout
    keep, lines = False, []
    for line in out.splitlines():
        m = re.match(r'#\s*\d+\s+"([^"]*)"', line)
        if m:
            keep = m.group(1).endswith(header.split("/")[-1])
            continue
        if keep:
            lines.append(line)
    return "\n".join(lines)


def statements(text):
    """Top-level statements (brace depth 0), split at ';'."""
    depth, current, out = 0, [], []
    for ch in text:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == ";" and depth == 0:
            out.append(" ".join("".join(current).split()))
            current = []
        else:
            current.append(ch)
    return out


def declared_functions(text):
    """{name: marked?} of the function declarations in text."""
    found = {}
    for st in statements(text):
        if st.startswith("typedef") or "(" not in st:
            continue
        head = st.replace(MARK, " ").split("(")[0]
        m = re.search(r"([A-Za-z_]\w*)\s*$", head)
        if m:
            found[m.group(1)] = MARK in st
    return found


def exported(library):
    out = subprocess.run(["nm", "-D", "--defined-only", library],
                         capture_output=True, text=True, check=True).stdout
    names = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] not in LINKER_SYMBOLS:
            names.add(parts[2].split("@")[0])
    return names


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cc", default="cc")
    ap.add_argument("--header", required=True)
    ap.add_argument("--library", required=True)
    args = ap.parse_args()
    declared = declared_functions(header_text(args.cc, args.header))
    exports = exported(args.library)
    problems = []
    for name in sorted(n for n, marked in declared.items() if not marked):
        problems.append("%s: %s is declared without PRISM_API" %
                        (args.header, name))
    for name in sorted(set(declared) - exports):
        problems.append("%s: %s is declared but not exported" %
                        (args.library, name))
    for name in sorted(exports - set(declared)):
        problems.append("%s: %s is exported but not declared in %s" %
                        (args.library, name, args.header))
    for line in problems:
        print(line)
    print("check_exports: %d functions declared, %d symbols exported, "
          "%d problem(s)" % (len(declared), len(exports), len(problems)))
    if not declared:
        print("check_exports: found no declarations; is %s the header?" %
              args.header)
        return 1
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
