#!/usr/bin/env python3
"""check_layers_test.py - tools/check_layers.py finds what it promises.

A checker that silently stops finding anything looks exactly like a clean
tree, so this builds a small tree with one violation of each rule (and
objects that call up a layer and in a circle) and requires each to be
reported with its file, line and rule, and a clean tree to pass.

Usage: check_layers_test.py [CC]
"""
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(os.path.dirname(HERE), "tools", "check_layers.py")

CMAKE = """set(PRISM_LAYERS base "reference|config" # siblings
                 gen)
set(PRISM_TOOL_LAYERS tools/common)
"""
FILES = {
    "include/prism.h": "",
    "base/b.h": '#include "prism.h"\n#include "gen/g.h"\n',
    "base/ok.c": '#include "base/b.h"\n',
    "reference/r.c": '#include "base/b.h"\n#include "config/c.h"\n',
    "config/c.h": '#include "base/b.h"\n',
    "config/c_internal.h": '#include "config/c.h"\n',
    "config/c.c": '#include "config/c_internal.h"\n',
    "gen/g.h": "",
    "gen/g.c": '#include "config/c_internal.h"\n',
    "gen/x.h": '#include "gen/y.h"\n',
    "gen/y.h": '\n#include "x.h"\n',
    "gen/m.c": '#include "nothere.h"\n',
    "tools/common/t.c": '#include "gen/g.h"\n',
    "tests/support/util.h": '#include "gen/g.h"\n',
    "tests/t.c": '#include "util.h"\n#include "config/c_internal.h"\n',
    "other/o.c": "",
}
EXPECTED = [
    "base/b.h:2: up:",
    "reference/r.c:2: up:",
    "gen/g.c:1: private:",
    "tests/t.c:2: private:",
    ": cycle: headers gen/x.h <-> gen/y.h",
    "gen/m.c:1: unknown:",
    "other/o.c: unknown:",
]
OBJECTS = {
    "gen/p.c": "int q(void);\nint p(void) { return q(); }\n",
    "gen/q.c": "int p(void);\nint q(void) { return p() + 1; }\n",
    "base/u.c": "int p(void);\nint u(void) { return p(); }\n",
}
EXPECTED_OBJECTS = [
    "base/u.c: calls-up: uses p of gen/p.c",
    "file-cycle: files gen/p.c <-> gen/q.c",
]


def write(root, files):
    for path, text in files.items():
        full = os.path.join(root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as f:
            f.write(text)


def run(args):
    r = subprocess.run([sys.executable, SCRIPT] + args, capture_output=True,
                       text=True)
    return r.returncode, r.stdout + r.stderr


def expect(label, rc, out, want_rc, lines):
    problems = [l for l in lines if l not in out]
    if rc != want_rc:
        problems.append("exit status %d, expected %d" % (rc, want_rc))
    for p in problems:
        print("%s: missing: %s" % (label, p))
    if problems:
        print(out)
    return len(problems)


def main():
    cc = sys.argv[1] if len(sys.argv) > 1 else "cc"
    failures = 0
    with tempfile.TemporaryDirectory() as root:
        write(root, {"CMakeLists.txt": CMAKE})
        write(root, FILES)
        rc, out = run(["--root", root])
        failures += expect("sources", rc, out, 1, EXPECTED)
        objdir = os.path.join(root, "objects")
        write(root, OBJECTS)
        for src in OBJECTS:
            obj = os.path.join(objdir, src + ".o")
            os.makedirs(os.path.dirname(obj), exist_ok=True)
            subprocess.run([cc, "-c", "-o", obj, os.path.join(root, src)],
                           check=True)
        rc, out = run(["--root", root, "--objects", objdir])
        failures += expect("objects", rc, out, 1, EXPECTED_OBJECTS)
    with tempfile.TemporaryDirectory() as root:
        write(root, {"CMakeLists.txt": CMAKE, "include/prism.h": "",
                     "base/b.h": '#include "prism.h"\n',
                     "gen/g.c": '#include "base/b.h"\n#include "prism.h"\n',
                     "tests/t.c": '#include "gen/g.c"\n'})
        rc, out = run(["--root", root])
        failures += expect("clean tree", rc, out, 0, ["0 violation(s)"])
    print("check_layers_test: %s" % ("FAILED" if failures else "passed"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
