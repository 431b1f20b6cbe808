"""The ctypes view against prism.h: prototypes, struct layouts, constants.

ctypes checks none of it: a missing argument type passes the argument with
the default conversion (a 32-bit int), a struct field out of place shifts
every field after it, and nothing fails until the library reads a wrong
value -- on a GPU, often as a crash.  These tests compare _lib.py with the
header of the repository the package is built from (include/prism.h,
beside python/), parsing the prototypes and compiling a small C program
for the layouts and constants; they skip where the header or a C compiler
is missing (an installed wheel on another host).  The raw launch
functions of _launch.py are checked against the declared prototypes
everywhere.
"""

import ctypes
import re
import shutil
import subprocess
from ctypes import (c_bool, c_char_p, c_double, c_int, c_int32, c_int64,
                    c_size_t, c_uint64, c_void_p)
from pathlib import Path

import pytest

from prism_attn import _launch, _lib

HEADER = Path(__file__).resolve().parents[2] / "include" / "prism.h"

STRUCTS = {  # ctypes class -> C type
    _lib.TuningOverride: "prism_tuning_override",
    _lib.Config: "prism_config",
    _lib.ContextOptions: "prism_context_options",
    _lib.PlanLimits: "prism_plan_limits",
    _lib.Tensor: "prism_tensor",
    _lib.Batch: "prism_batch",
    _lib.PagedKV: "prism_paged_kv",
    _lib.Params: "prism_params",
    _lib.LayerRange: "prism_layer_range",
    _lib.LayerOverride: "prism_layer_override",
    _lib.BlockMaskStruct: "prism_block_mask",
    _lib.Counters: "prism_counters",
}

CONSTANTS = {  # _lib name -> C expression
    "MAX_BATCH": "PRISM_MAX_BATCH", "MAX_SEQLEN": "PRISM_MAX_SEQLEN",
    "MAX_WORKSPACE_BYTES": "PRISM_MAX_WORKSPACE_BYTES",
    "MAX_TENSOR_BYTES": "PRISM_MAX_TENSOR_BYTES",
    "NAME_MAX": "PRISM_NAME_MAX", "PATH_MAX": "PRISM_PATH_MAX",
    "MAX_TARGETS": "PRISM_MAX_TARGETS", "MAX_TUNING": "PRISM_MAX_TUNING",
    "MAX_LAYER": "PRISM_MAX_LAYER", "MAX_LAYER_RANGES": "PRISM_MAX_LAYER_RANGES",
    "MAX_LAYER_OVERRIDES": "PRISM_MAX_LAYER_OVERRIDES",
    "OK": "PRISM_OK", "ERR_INVALID_ARGUMENT": "PRISM_ERR_INVALID_ARGUMENT",
    "ERR_OUT_OF_MEMORY": "PRISM_ERR_OUT_OF_MEMORY",
    "ERR_CONFIG": "PRISM_ERR_CONFIG", "ERR_UNSUPPORTED": "PRISM_ERR_UNSUPPORTED",
    "ERR_NO_DRIVER": "PRISM_ERR_NO_DRIVER",
    "ERR_NO_DEVICE": "PRISM_ERR_NO_DEVICE",
    "DTYPE_BF16": "PRISM_DTYPE_BF16", "DTYPE_FP16": "PRISM_DTYPE_FP16",
    "DTYPE_FP32": "PRISM_DTYPE_FP32", "ROPE_HALF": "PRISM_ROPE_HALF",
    "ROPE_INTERLEAVED": "PRISM_ROPE_INTERLEAVED",
    "DEVICE_CUDA": "PRISM_DEVICE_CUDA", "DEVICE_CPU": "PRISM_DEVICE_CPU",
    "LOG_DEBUG": "PRISM_LOG_DEBUG", "LOG_WARN": "PRISM_LOG_WARN",
    "LOG_ERROR": "PRISM_LOG_ERROR",
}


def _header_text():
    if not HEADER.exists():
        pytest.skip(f"{HEADER} is not beside the package's tests")
    return HEADER.read_text()


# --- prototypes -------------------------------------------------------------
def _prototypes(text):
    """{name: (return type, [parameter declarations])} of PRISM_API."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    out = {}
    for m in re.finditer(r"PRISM_API\s+([^;{}()]*?)(\w+)\s*\(([^;{}]*?)\)\s*;",
                         text, re.S):
        params = " ".join(m.group(3).split())
        out[m.group(2)] = (" ".join(m.group(1).split()),
                           [] if params in ("", "void")
                           else [p.strip() for p in params.split(",")])
    return out


_C_SCALARS = {"size_t": c_size_t, "int64_t": c_int64, "uint64_t": c_uint64,
              "double": c_double, "bool": c_bool, "void": None}


def _c_kind(decl):
    """The ctypes type a C declaration passes as ("pointer" for any)."""
    decl = re.sub(r"\b(const|struct|enum)\b", " ", decl).strip()
    if "*" in decl or decl.split()[0] == "prism_stream":
        return "pointer"
    return _C_SCALARS.get(decl.split()[0], c_int)  # int and the enums


def _py_kind(t):
    if t is None:
        return None
    if (t in (c_void_p, c_char_p) or issubclass(t, ctypes._Pointer)
            or issubclass(t, ctypes._CFuncPtr)):
        return "pointer"
    return c_int if t is c_int32 else t


def test_declared_prototypes_match_the_header():
    protos = _prototypes(_header_text())
    lib = _lib.lib()
    assert _lib._declared, "_lib._declare gave no prototypes"
    for name in _lib._declared:
        assert name in protos, f"{name} is not a PRISM_API function of prism.h"
        ret, params = protos[name]
        fn = getattr(lib, name)
        want = [_c_kind(p) for p in params]
        got = [_py_kind(t) for t in fn.argtypes]
        assert len(got) == len(want), (
            f"{name}: prism.h has {len(want)} parameters ({params}), "
            f"_lib.py declares {len(got)}")
        for i, (g, w) in enumerate(zip(got, want)):
            assert g == w, (f"{name} parameter {i + 1} ({params[i]}): "
                            f"_lib.py passes {fn.argtypes[i]}")
        assert _py_kind(fn.restype) == _c_kind(ret), (
            f"{name} returns {ret} but _lib.py reads {fn.restype}")


def test_raw_launch_functions_keep_the_declared_prototypes():
    """The fast path's functions take addresses (c_void_p) where the
    declared ones take struct pointers, and nothing else differs: one
    argument short and ctypes would pass the stream as a 32-bit int."""
    lib = _lib.lib()
    for name, raw in _launch._raw_functions().items():
        declared = getattr(lib, name)
        assert raw is not declared
        assert raw.restype is declared.restype is c_int
        assert len(raw.argtypes) == len(declared.argtypes), name
        for r, d in zip(raw.argtypes, declared.argtypes):
            assert r is d or (r is c_void_p and _py_kind(d) == "pointer"), \
                f"{name}: {r} for {d}"
        assert raw.argtypes[-1] is c_void_p and raw.argtypes[-2] is c_size_t, \
            f"{name}: the workspace size and the stream end the arguments"


# --- layouts and constants, from a compiled program -----------------------------
def _c_program():
    lines = ["#include <stddef.h>", "#include <stdio.h>",
             '#include "prism.h"', "int main(void) {"]
    for cls, ctype in STRUCTS.items():
        lines.append(f'    printf("{ctype} %zu\\n", sizeof({ctype}));')
        for field, _ in cls._fields_:
            lines.append(f'    printf("{ctype}.{field} %zu\\n", '
                         f"offsetof({ctype}, {field}));")
    for name, expr in CONSTANTS.items():
        lines.append(f'    printf("{name} %lld\\n", (long long)({expr}));')
    lines += ["    return 0;", "}"]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def c_values(tmp_path_factory):
    _header_text()
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no C compiler")
    d = tmp_path_factory.mktemp("abi")
    (d / "abi.c").write_text(_c_program())
    build = subprocess.run([cc, "-std=c11", "-I", str(HEADER.parent),
                            "-o", str(d / "abi"), str(d / "abi.c")],
                           capture_output=True, text=True)
    assert build.returncode == 0, (
        "a struct field of _lib.py is not in prism.h:\n" + build.stderr)
    out = subprocess.run([str(d / "abi")], capture_output=True, text=True,
                         check=True).stdout
    return dict((k, int(v)) for k, v in (line.split() for line in
                                         out.splitlines()))


@pytest.mark.parametrize("cls", list(STRUCTS), ids=lambda c: c.__name__)
def test_struct_layouts_match_the_header(cls, c_values):
    ctype = STRUCTS[cls]
    for field, _ in cls._fields_:
        assert getattr(cls, field).offset == c_values[f"{ctype}.{field}"], (
            f"{cls.__name__}.{field} at {getattr(cls, field).offset}, "
            f"{ctype}.{field} at {c_values[f'{ctype}.{field}']}")
    assert ctypes.sizeof(cls) == c_values[ctype], (
        f"sizeof {cls.__name__} {ctypes.sizeof(cls)}, {ctype} "
        f"{c_values[ctype]}: a field is missing")


def test_constants_match_the_header(c_values):
    for name in CONSTANTS:
        assert getattr(_lib, name) == c_values[name], (
            f"_lib.{name} = {getattr(_lib, name)} but prism.h says "
            f"{c_values[name]}")
