"""The public surface: names, modules, version, and the binding of every C function."""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import bioxen_vm
from bioxen_vm import _header, _native
from bioxen_vm._signatures import SIGNATURES, short_name

from conftest import REPO, run_python

ORIGINAL_ALL = [
    "LuaProcess", "NetworkedLuaVM", "VMManager", "VMCluster", "InteractiveSession",
    "SessionManager", "LuaScriptTemplate", "validate_port", "validate_host",
    "LuaVMError", "LuaProcessError", "NetworkingError", "LuaNotFoundError",
    "LuaSocketNotFoundError", "VMConnectionError", "VMTimeoutError", "ScriptGenerationError",
    "InteractiveSessionError", "AttachError", "DetachError", "PTYError",
    "SessionNotFoundError", "SessionAlreadyExistsError", "SessionStateError",
    "IOThreadError", "ProcessRegistryError", "VMManagerError",
    "__version__", "create_vm", "create_manager", "create_interactive_manager",
    "create_interactive_session",
]

HEADER = Path(bioxen_vm._backend.header_path).read_text(encoding="utf-8")


def test_all_is_a_superset_of_the_originals_plus_vmlogger():
    assert set(ORIGINAL_ALL) | {"VMLogger"} <= set(bioxen_vm.__all__)
    for name in bioxen_vm.__all__:
        assert hasattr(bioxen_vm, name), name
    assert len(bioxen_vm.__all__) == len(set(bioxen_vm.__all__))


def test_submodules_and_their_names():
    from bioxen_vm import exceptions, logger
    from bioxen_vm.logger import VMLogger

    assert VMLogger is bioxen_vm.VMLogger
    for name in exceptions.__all__:
        assert isinstance(getattr(exceptions, name), type)
    assert logger.VMLogger is VMLogger


def test_version_is_the_c_librarys():
    assert bioxen_vm.__version__ == bioxen_vm._backend.version()
    assert re.fullmatch(r"\d+\.\d+\.\d+", bioxen_vm.__version__)
    cargo = REPO / "Cargo.toml"
    text = cargo.read_text(encoding="utf-8")
    assert f'version = "{bioxen_vm.__version__}"' in text
    defines = _header.integer_defines(HEADER)
    assert bioxen_vm._backend.abi_version() == defines["BIOXEN_VM_ABI_VERSION"]
    major, minor, patch = (int(x) for x in bioxen_vm.__version__.split("."))
    assert (major, minor, patch) == (defines["BIOXEN_VM_VERSION_MAJOR"],
                                     defines["BIOXEN_VM_VERSION_MINOR"],
                                     defines["BIOXEN_VM_VERSION_PATCH"])


def test_py_typed_and_bundled_files_ship():
    package = Path(bioxen_vm.__file__).parent
    assert (package / "py.typed").is_file()


C_SPELLING = {
    "i32": "int32_t", "u32": "uint32_t", "i64": "int64_t", "u64": "uint64_t",
    "f64": "double", "size": "size_t", "bool": "bool", "str": "const char *",
    "buf": "const char *", "cstr": "const char *", "void": "void", "void*": "void *",
    "bytes*": "struct bioxen_vm_bytes *", "result*": "struct bioxen_vm_result *",
    "u64*": "uint64_t *", "bool*": "bool *", "size*": "size_t *", "cstr*": "const char **",
    "rbuf*": "struct bioxen_vm_result_buffer *", "rbuf**": "struct bioxen_vm_result_buffer **",
    "view**": "const struct bioxen_vm_result **",
    "log_fn": "bioxen_vm_log_fn", "output_fn": "bioxen_vm_output_fn",
    "job_fn": "bioxen_vm_job_callback", "progress_fn": "bioxen_vm_progress_fn",
}


def _param_type(param: str) -> str:
    param = " ".join(param.replace("*", " * ").split())
    words = param.split(" ")
    if len(words) > 1 and re.fullmatch(r"[a-z_][a-z0-9_]*", words[-1]) and words[-1] not in (
            "int32_t", "uint64_t", "bool", "size_t", "double", "int64_t", "uint32_t"):
        words = words[:-1]  # drop the parameter name
    return " ".join(words).replace("* *", "**").replace(" *", " *")


def _normal(c_type: str) -> str:
    return " ".join(c_type.replace("*", " * ").split()).replace("* *", "**")


def test_the_signature_table_matches_the_header_exactly():
    prototypes = _header.prototypes(HEADER)
    assert set(prototypes) == set(SIGNATURES), (
        "functions in the header but not bound: "
        f"{sorted(set(prototypes) - set(SIGNATURES))}; bound but not in the header: "
        f"{sorted(set(SIGNATURES) - set(prototypes))}")
    for name, proto in prototypes.items():
        m = re.fullmatch(r"(.*?)\s*\b" + name + r"\((.*)\)", proto)
        assert m, proto
        ret, params = m.group(1), m.group(2)
        _kind, restype, argtypes = SIGNATURES[name]
        assert _normal(ret) == _normal(C_SPELLING[restype]), (name, ret, restype)
        params = [] if params.strip() in ("", "void") else [p.strip() for p in params.split(",")]
        assert len(params) == len(argtypes), (name, params, argtypes)
        for param, abstract in zip(params, argtypes):
            assert _normal(_param_type(param)) == _normal(C_SPELLING[abstract]), (
                name, param, abstract)


def test_every_exported_function_is_bound():
    nm = shutil.which("nm")
    assert nm, "nm (binutils) is needed to list the library's exports"
    out = subprocess.run([nm, "-D", "--defined-only", bioxen_vm.LIBRARY_PATH],
                         capture_output=True, text=True, check=True).stdout
    exported = {line.split()[-1] for line in out.splitlines()
                if line.split()[1:2] == ["T"] and line.split()[-1].startswith("bioxen_vm_")}
    assert exported == set(SIGNATURES)


def test_ctypes_declares_argtypes_and_restype_for_every_function():
    from bioxen_vm._backend_ctypes import CTYPES, CtypesBackend

    backend = CtypesBackend(bioxen_vm.LIBRARY_PATH, _native.Dispatch())
    assert set(backend.functions) == set(SIGNATURES)
    for name, fn in backend.functions.items():
        _kind, restype, argtypes = SIGNATURES[name]
        assert fn.argtypes is not None and list(fn.argtypes) == [CTYPES[a] for a in argtypes]
        assert fn.restype is CTYPES[restype] or (restype == "void" and fn.restype is None)
    for name, (kind, _r, _a) in SIGNATURES.items():
        if kind not in ("raw", "callback", "json"):
            assert callable(getattr(backend, short_name(name)))
    from bioxen_vm._backend_ctypes import Bytes, Result

    assert ctypes.sizeof(Bytes) == 2 * ctypes.sizeof(ctypes.c_void_p)
    assert ctypes.sizeof(Result) == 8 + 4 * ctypes.sizeof(Bytes) + 16


def test_cffi_types_match_the_table():
    import cffi
    from bioxen_vm._backend_cffi import CffiBackend

    cffi_name = {
        "i32": "int32_t", "u32": "uint32_t", "i64": "int64_t", "u64": "uint64_t",
        "f64": "double", "size": "size_t", "bool": "_Bool", "str": "char *", "buf": "char *",
        "cstr": "char *", "void": "void", "void*": "void *", "bytes*": "bioxen_vm_bytes *",
        "result*": "bioxen_vm_result *", "u64*": "uint64_t *", "bool*": "_Bool *",
        "size*": "size_t *", "cstr*": "char * *",
        "rbuf*": "bioxen_vm_result_buffer *", "rbuf**": "bioxen_vm_result_buffer * *",
        "view**": "bioxen_vm_result * *",
        "log_fn": "void(*)(int32_t, char *, char *, void *)",
        "output_fn": "void(*)(char *, int32_t, char *, size_t, void *)",
        "job_fn": "void(*)(uint64_t, int32_t, void *)",
        "progress_fn": "int32_t(*)(char *, void *)",
    }
    backend = CffiBackend(bioxen_vm.LIBRARY_PATH, _native.Dispatch(), HEADER)
    ffi = backend.ffi
    assert set(backend.functions) == set(SIGNATURES)
    for name, fn in backend.functions.items():
        _kind, restype, argtypes = SIGNATURES[name]
        t = ffi.typeof(fn)
        assert t.result.cname == cffi_name[restype], name
        assert [a.cname for a in t.args] == [cffi_name[a] for a in argtypes], name
    from bioxen_vm._backend_ctypes import Result

    assert ffi.sizeof("bioxen_vm_result") == ctypes.sizeof(Result)
    assert ffi.sizeof("bioxen_vm_result_flat") == ffi.sizeof("bioxen_vm_result")
    assert cffi.__version__


def test_backend_selection(tmp_path):
    code = "import bioxen_vm; print(bioxen_vm.BACKEND)"
    for choice in ("ctypes", "cffi"):
        r = run_python(code, tmp_path, {"BIOXEN_VM_BACKEND": choice})
        assert r.returncode == 0, r.stderr
        assert r.stdout.decode().strip() == choice
    r = run_python("import os; os.environ.pop('BIOXEN_VM_BACKEND', None)\n" + code, tmp_path,
                   {"BIOXEN_VM_BACKEND": ""})
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().strip() == "cffi"  # the default when cffi is installed
    r = run_python(code, tmp_path, {"BIOXEN_VM_BACKEND": "bogus"})
    assert r.returncode != 0 and b"BIOXEN_VM_BACKEND must be" in r.stderr


def test_bioxen_vm_lib_selects_the_library(tmp_path):
    code = "import bioxen_vm; print(bioxen_vm.LIBRARY_PATH)"
    copy = tmp_path / "copy" / "libbioxen_vm.so"
    copy.parent.mkdir()
    shutil.copyfile(bioxen_vm.LIBRARY_PATH, copy)
    r = run_python(code, tmp_path, {"BIOXEN_VM_LIB": str(copy)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().strip() == str(copy)
    r = run_python(code, tmp_path, {"BIOXEN_VM_LIB": str(tmp_path / "missing.so")})
    assert r.returncode != 0 and b"is not a file" in r.stderr


def test_importing_prints_nothing_and_writes_nothing(tmp_path):
    r = run_python("import bioxen_vm, bioxen_vm.logger, bioxen_vm.exceptions", tmp_path)
    assert r.returncode == 0 and r.stdout == b"" and r.stderr == b""
    assert [p.name for p in tmp_path.iterdir()] == ["home"]
    assert list((tmp_path / "home").iterdir()) == []


class TestHeaderPreprocessor:
    def test_conditionals_comments_and_defines(self):
        text = """/* c */ #ifndef G
#define G
#include <stdint.h>
#define N 7 // seven
#define S "str"
#if 0
int hidden;
#elif defined(G)
int shown; // kept
#else
int other;
#endif
#ifdef __cplusplus
extern "C" {
#endif
int f(void);
#ifdef __cplusplus
}
#endif
#endif
"""
        out = _header.preprocess(text)
        assert "#define N 7" in out and "int shown;" in out and "int f(void);" in out
        assert "hidden" not in out and "other" not in out and "extern" not in out
        assert "include" not in out and "str" not in out and "//" not in out

    def test_refuses_what_it_cannot_evaluate(self):
        with pytest.raises(ValueError):
            _header.preprocess("#if X > 2\n#endif\n")
        with pytest.raises(ValueError):
            _header.preprocess("#ifdef X\n")

    def test_the_real_header_gives_a_cdef(self):
        import cffi
        ffi = cffi.FFI()
        ffi.cdef(_header.preprocess(HEADER))
        assert ffi.sizeof("bioxen_vm_bytes") == 16
