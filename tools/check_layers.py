#!/usr/bin/env python3
"""check_layers.py - keeps the layers of the tree one-way.

The library is a stack of folders (CMakeLists.txt, PRISM_LAYERS, lowest
first; the tools above it in PRISM_TOOL_LAYERS).  A layer may use the
layers below it and nothing else, so each can be read, tested and changed
without knowing what sits on top of it, and a change to a higher layer can
never break a lower one.  This script is the rule's only enforcement: the
compiler accepts any include that resolves.

Source mode (default) reads every `#include "..."` of the library, the
tools and the tests and reports, as FILE:LINE: rule: detail,
  up        an include of a higher layer, or of a sibling of the same rank
            (reference and config, runtime/cuda and runtime/cpu, the two
            tools); tests/ may include any layer;
  private   an include of another folder's private header (*_internal.h
            is private to its folder, tests included);
  cycle     headers that include each other, directly or not;
  unknown   a file outside every layer, or an include that resolves to
            nothing in the tree.
Object mode (--objects DIR..., after a build) reads the symbols of the
object files under each DIR (ctest passes the library's and the tools')
with nm and reports, per source file,
  calls-up    a call (or data reference) into a higher or sibling layer;
  file-cycle  source files that call each other, directly or not: a file
              depends on another when it uses a symbol the other defines.
PENDING lists dependencies known to break a rule and being removed; they
are reported but do not fail, and an entry that no longer matches
anything fails (delete it).  Exit status 0: clean; 1: violations.
"""
import argparse
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Every .c and .h of the tree is checked but those of hidden folders and
# build trees.  tests/ sits above every layer.
SOURCE_EXTS = (".c", ".h")
TOP = "tests"
# Include directories besides the including file's own folder, as the
# build passes them (CMakeLists.txt): the root, include/, and for the
# tests tests/support and tests.
INCLUDE_PATH = ["", "include"]
TEST_INCLUDE_PATH = ["tests/support", "tests"]

# (from, to): (rule, why).  `from` and `to` are files for includes and
# source files (.c) for object dependencies.
PENDING = {}

INCLUDE_RE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


# ---- the layers -----------------------------------------------------------

def cmake_list(text, name):
    """The words of set(NAME ...) in CMakeLists.txt."""
    m = re.search(r"set\(\s*%s\s+([^)]*)\)" % name, text)
    if not m:
        sys.exit("check_layers: no set(%s ...) in CMakeLists.txt" % name)
    body = re.sub(r"#[^\n]*", "", m.group(1))
    return [w.strip('"') for w in body.split()]


def load_ranks():
    """{layer folder: rank}; "a|b" in the lists makes siblings of a rank."""
    with open(os.path.join(ROOT, "CMakeLists.txt")) as f:
        text = f.read()
    groups = ["include"] + cmake_list(text, "PRISM_LAYERS") + \
        cmake_list(text, "PRISM_TOOL_LAYERS")
    ranks = {}
    for rank, group in enumerate(groups):
        for layer in group.split("|"):
            ranks[layer] = rank
    ranks[TOP] = len(groups)
    return ranks


def layer_of(path, ranks):
    """The layer whose folder is the longest prefix of path's folder."""
    folder = os.path.dirname(path)
    best = None
    for layer in ranks:
        if folder == layer or folder.startswith(layer + "/"):
            if best is None or len(layer) > len(best):
                best = layer
    return best


def may_use(src_layer, dst_layer, ranks):
    """None when allowed, else what is wrong."""
    if src_layer == dst_layer or src_layer == TOP:
        return None
    if ranks[dst_layer] > ranks[src_layer]:
        return "%s is a higher layer than %s" % (dst_layer, src_layer)
    if ranks[dst_layer] == ranks[src_layer]:
        return "%s and %s are siblings" % (src_layer, dst_layer)
    return None


# ---- reports --------------------------------------------------------------

class Report:
    def __init__(self):
        self.errors, self.pending, self.used = [], [], set()

    def add(self, where, rule, detail, pair=None):
        if pair is not None and pair in PENDING:
            self.used.add(pair)
            self.pending.append("%s: %s (pending: %s): %s" %
                                (where, rule, PENDING[pair][1], detail))
            return
        self.errors.append("%s: %s: %s" % (where, rule, detail))

    def finish(self, mode):
        for line in self.pending:
            print(line)
        for pair, (rule, why) in sorted(PENDING.items()):
            if (rule in mode) and pair not in self.used:
                self.errors.append("tools/check_layers.py: stale: PENDING "
                                   "entry %s -> %s (%s) matches nothing; "
                                   "delete it" % (pair[0], pair[1], rule))
        for line in self.errors:
            print(line)
        print("check_layers: %d violation(s), %d pending" %
              (len(self.errors), len(self.pending)))
        return 1 if self.errors else 0


# ---- source mode ----------------------------------------------------------

def is_build_tree(folder):
    return os.path.exists(os.path.join(folder, "CMakeCache.txt"))


def list_sources():
    out = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and
                         not is_build_tree(os.path.join(folder, d)))
        for name in sorted(files):
            if name.endswith(SOURCE_EXTS):
                out.append(os.path.relpath(os.path.join(folder, name), ROOT))
    return out


def includes_of(path):
    """[(line number, written name)] of the quoted includes of path."""
    found = []
    with open(os.path.join(ROOT, path), errors="replace") as f:
        for number, line in enumerate(f, 1):
            m = INCLUDE_RE.match(line)
            if m:
                found.append((number, m.group(1)))
    return found


def resolve(src, name):
    """The tree path an include names, as the compiler finds it, or None."""
    dirs = [os.path.dirname(src)] + INCLUDE_PATH
    if src.startswith(TOP + "/"):
        dirs += TEST_INCLUDE_PATH
    for d in dirs:
        candidate = os.path.normpath(os.path.join(d, name))
        if os.path.isfile(os.path.join(ROOT, candidate)):
            return candidate
    return None


def is_private(header):
    return os.path.basename(header).endswith("_internal.h")


def check_include(report, ranks, src, number, name, graph):
    where = "%s:%d" % (src, number)
    dst = resolve(src, name)
    if dst is None:
        report.add(where, "unknown", '"%s" resolves to no file of the tree'
                   % name)
        return
    graph.setdefault(src, []).append((dst, number))
    dst_layer = layer_of(dst, ranks)
    if dst_layer is None:
        report.add(where, "unknown", "%s is in no layer" % dst)
        return
    why = may_use(layer_of(src, ranks), dst_layer, ranks)
    if why:
        report.add(where, "up", '"%s": %s' % (name, why), (src, dst))
    if is_private(dst) and os.path.dirname(dst) != os.path.dirname(src):
        report.add(where, "private", '"%s" is private to %s/' %
                   (name, os.path.dirname(dst)), (src, dst))


def strongly_connected(graph):
    """Tarjan's components of more than one node (or with a self edge)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                out.append(sorted(comp))

    sys.setrecursionlimit(max(10000, sys.getrecursionlimit()))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def report_cycles(report, edges, rule, label):
    """edges: {a: {b: where}}; one report per cycle, listing its edges."""
    graph = {a: sorted(bs) for a, bs in edges.items()}
    for comp in strongly_connected(graph):
        members = set(comp)
        links = ["%s -> %s (%s)" % (a, b, edges[a][b])
                 for a in comp for b in sorted(edges.get(a, {}))
                 if b in members]
        report.add(comp[0], rule, "%s %s: %s" %
                   (label, " <-> ".join(comp), "; ".join(links)))


def check_sources():
    ranks = load_ranks()
    report = Report()
    graph = {}
    files = list_sources()
    for src in files:
        if layer_of(src, ranks) is None:
            report.add(src, "unknown", "in no layer: add its folder to "
                       "PRISM_LAYERS or PRISM_TOOL_LAYERS (CMakeLists.txt)")
            continue
        for number, name in includes_of(src):
            check_include(report, ranks, src, number, name, graph)
    headers = {}
    for src, targets in graph.items():
        if src.endswith(".h"):
            for dst, number in targets:
                if dst.endswith(".h") and (src, dst) not in PENDING:
                    headers.setdefault(src, {})[dst] = "line %d" % number
    report_cycles(report, headers, "cycle", "headers")
    print("check_layers: %d files, %d includes" %
          (len(files), sum(len(t) for t in graph.values())))
    return report.finish(("up", "private", "cycle", "unknown"))


# ---- object mode ----------------------------------------------------------

def read_symbols(obj):
    """(defined, undefined) external symbols of one object file."""
    out = subprocess.run(["nm", obj], capture_output=True, text=True,
                         check=True).stdout
    defined, undefined = set(), set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "TDBRCGSVW":
            defined.add(parts[2])
        elif len(parts) == 2 and parts[0] == "U":
            undefined.add(parts[1])
    return defined, undefined


def list_objects(tops):
    """{source path: object path} of the tree's sources (CMake names an
    object SOURCE.o; one whose source is gone or generated is left out)."""
    found = {}
    for top in tops:
        for folder, dirs, files in os.walk(top):
            dirs.sort()
            for name in sorted(files):
                obj = os.path.join(folder, name)
                src = os.path.relpath(obj, top)[:-2]
                if name.endswith(".c.o") and \
                        os.path.isfile(os.path.join(ROOT, src)):
                    found[src] = obj
    return found


def object_edges(objects):
    """{a: {b: first symbol a uses that b defines}} between source files."""
    owner, uses = {}, {}
    for src, obj in objects.items():
        defined, undefined = read_symbols(obj)
        uses[src] = undefined
        for sym in defined:
            owner[sym] = src
    edges = {}
    for src in sorted(uses):
        for sym in sorted(uses[src]):
            dst = owner.get(sym)
            if dst and dst != src:
                edges.setdefault(src, {}).setdefault(dst, sym)
    return edges


def check_objects(tops):
    ranks = load_ranks()
    report = Report()
    objects = list_objects(tops)
    if not objects:
        sys.exit("check_layers: no object files under %s" % " ".join(tops))
    edges = object_edges(objects)
    kept = {}
    for src, dsts in sorted(edges.items()):
        for dst, sym in sorted(dsts.items()):
            src_layer, dst_layer = layer_of(src, ranks), layer_of(dst, ranks)
            if (src, dst) in PENDING:
                report.add(src, PENDING[(src, dst)][0], "uses %s of %s" %
                           (sym, dst), (src, dst))
                continue
            kept.setdefault(src, {})[dst] = sym
            if src_layer and dst_layer:
                why = may_use(src_layer, dst_layer, ranks)
                if why:
                    report.add(src, "calls-up", "uses %s of %s: %s" %
                               (sym, dst, why), (src, dst))
    report_cycles(report, kept, "file-cycle", "files")
    print("check_layers: %d object files, %d file dependencies" %
          (len(objects), sum(len(d) for d in edges.values())))
    return report.finish(("calls-up", "file-cycle"))


def main():
    global ROOT
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=ROOT,
                    help="the tree to check (default: this repository)")
    ap.add_argument("--objects", metavar="DIR", nargs="+",
                    help="check the object files under each DIR (e.g. "
                    "build/CMakeFiles/prism_objects.dir) instead of the "
                    "includes")
    args = ap.parse_args()
    if os.path.abspath(args.root) != ROOT:
        PENDING.clear()  # the exceptions are this repository's
    ROOT = os.path.abspath(args.root)
    if args.objects:
        return check_objects(args.objects)
    return check_sources()


if __name__ == "__main__":
    sys.exit(main())
