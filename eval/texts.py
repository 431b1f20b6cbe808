"""Evaluation texts: long English technical prose that ships with packages,
extracted reproducibly (nothing is checked in).

  pyref  The Python Language Reference chapters "Execution model",
         "Compound statements", "The import system" and "Simple statements:
         assignment", as plain text from ``pydoc_data.topics`` (part of
         CPython's standard library; PSF License).  The text depends a little
         on the Python version, so a run records the version and a hash.
  gpl3   The GNU General Public License version 3 from Debian's
         ``base-files`` package (/usr/share/common-licenses/GPL-3; verbatim
         copies are permitted).
  pytypes  (spare) "Built-in Types" sections from ``pydoc_data.topics``.

``load(name, text_dir)`` returns the text from ``text_dir/<name>.txt`` when
that file exists (a copy made by ``python3 -m eval.texts --write DIR`` so
another machine reads exactly the same bytes), else extracts it here.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys

PYREF_TOPICS = ["execmodel", "compound", "import", "assignment"]
PYTYPES_TOPICS = ["types", "typesseq", "typesmapping", "string-methods"]
GPL3_PATH = "/usr/share/common-licenses/GPL-3"

SOURCES = {
    "pyref": "Python Language Reference topics " + ", ".join(PYREF_TOPICS)
             + " from pydoc_data.topics (CPython standard library, PSF License)",
    "gpl3": GPL3_PATH + " (Debian package base-files; GPL-3 text, "
            "verbatim copying permitted)",
    "pytypes": "Python Built-in Types topics " + ", ".join(PYTYPES_TOPICS)
               + " from pydoc_data.topics (CPython standard library, PSF License)",
}
DEFAULT_TEXTS = ["pyref", "gpl3"]


class TextNotFound(RuntimeError):
    pass


def _pydoc_topics(keys):
    from pydoc_data.topics import topics
    missing = [k for k in keys if k not in topics]
    if missing:
        raise TextNotFound(f"pydoc_data.topics lacks {missing}")
    return "\n\n".join(topics[k].strip("\n") for k in keys) + "\n"


def extract(name: str) -> str:
    if name == "pyref":
        return _pydoc_topics(PYREF_TOPICS)
    if name == "pytypes":
        return _pydoc_topics(PYTYPES_TOPICS)
    if name == "gpl3":
        if not os.path.isfile(GPL3_PATH):
            raise TextNotFound(f"{GPL3_PATH} missing (Debian package base-files)")
        with open(GPL3_PATH, encoding="utf-8") as f:
            return f.read()
    raise TextNotFound(f"unknown text {name!r}; known: {sorted(SOURCES)}")


def load(name: str, text_dir: str | None = None) -> str:
    text_dir = text_dir or os.environ.get("PRISM_EVAL_TEXTS")
    if text_dir:
        p = os.path.join(text_dir, name + ".txt")
        if os.path.isfile(p):
            with open(p, encoding="utf-8") as f:
                return f.read()
    return extract(name)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write", metavar="DIR", help="write <name>.txt files here")
    ap.add_argument("names", nargs="*", default=None)
    a = ap.parse_args(argv)
    names = a.names or sorted(SOURCES)
    for n in names:
        t = extract(n)
        line = f"{n}: {len(t)} chars, sha256 {sha256(t)[:16]}, {SOURCES[n]}"
        if a.write:
            os.makedirs(a.write, exist_ok=True)
            with open(os.path.join(a.write, n + ".txt"), "w", encoding="utf-8") as f:
                f.write(t)
        print(line)
    print(f"python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
