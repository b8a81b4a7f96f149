"""Reading the C header: a small preprocessor that turns it into a cffi ``cdef``.

The header is cbindgen output: an include guard, ``#include`` lines, ``#define NAME
<integer>`` constants, comments, and an ``extern "C"`` block inside ``#ifdef __cplusplus``.
cffi's ``cdef`` takes none of the directives except integer ``#define``s, so this keeps
what a C compiler (not C++) would see: conditionals are evaluated (``#ifdef``, ``#ifndef``,
``#if 0/1``, ``#if defined(X)``, ``#else``, ``#elif``, ``#endif``; nothing outside the header
is defined, in particular not ``__cplusplus``), comments and includes are dropped, integer
``#define``s are kept.
"""

from __future__ import annotations

import re
from typing import Dict, List

_BLOCK_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_LINE_COMMENT = re.compile(r"//[^\n]*")
_DEFINE = re.compile(r"#\s*define\s+(\w+)(?:\s+(.*?))?\s*$")
_INT = re.compile(r"^\(?\s*(-?(?:0[xX][0-9a-fA-F]+|\d+))[uUlL]*\s*\)?$")
_DEFINED = re.compile(r"defined\s*\(?\s*(\w+)\s*\)?")


def _eval_condition(expr: str, macros: Dict[str, str]) -> bool:
    """``#if`` conditions as cbindgen could write them: an integer, a macro, ``defined(X)``,
    each optionally negated with ``!``. Anything else is refused rather than guessed."""
    expr = expr.strip()
    negate = False
    while expr.startswith("!"):
        negate = not negate
        expr = expr[1:].strip()
    m = _DEFINED.fullmatch(expr)
    if m:
        value = m.group(1) in macros
    elif _INT.match(expr):
        value = int(_INT.match(expr).group(1), 0) != 0  # type: ignore[union-attr]
    elif re.fullmatch(r"[A-Za-z_]\w*", expr):
        iv = _INT.match(macros.get(expr, "0"))
        value = bool(iv and int(iv.group(1), 0))
    else:
        raise ValueError(f"cannot evaluate #if {expr!r} in the header")
    return value != negate


def preprocess(text: str) -> str:
    """The header as a cffi ``cdef``: declarations plus integer ``#define``s."""
    text = _BLOCK_COMMENT.sub(" ", text)
    text = _LINE_COMMENT.sub("", text)
    text = text.replace("\\\n", " ")
    macros: Dict[str, str] = {}
    # Stack of (this branch active, some branch of this group was taken).
    stack: List[List[bool]] = []
    out: List[str] = []

    def active() -> bool:
        return all(frame[0] for frame in stack)

    for line in text.splitlines():
        stripped = line.strip()
        if not stripped.startswith("#"):
            if active() and stripped:
                out.append(line)
            continue
        directive = stripped[1:].strip()
        word, _, rest = directive.partition(" ")
        rest = rest.strip()
        if word in ("ifdef", "ifndef", "if"):
            if word == "ifdef":
                cond = rest in macros
            elif word == "ifndef":
                cond = rest not in macros
            else:
                cond = _eval_condition(rest, macros) if active() else False
            stack.append([cond, cond])
        elif word == "elif":
            frame = stack[-1]
            cond = not frame[1] and _eval_condition(rest, macros)
            frame[0] = cond
            frame[1] = frame[1] or cond
        elif word == "else":
            frame = stack[-1]
            frame[0] = not frame[1]
            frame[1] = True
        elif word == "endif":
            stack.pop()
        elif not active():
            continue
        elif word == "define":
            m = _DEFINE.match(stripped)
            if m is None:
                continue
            name, value = m.group(1), (m.group(2) or "").strip()
            macros[name] = value
            iv = _INT.match(value)
            if iv:
                out.append(f"#define {name} {int(iv.group(1), 0)}")
        # #include, #pragma, #undef, #error: nothing cffi needs
    if stack:
        raise ValueError("unbalanced #if/#endif in the header")
    return "\n".join(out) + "\n"


def integer_defines(text: str) -> Dict[str, int]:
    """The header's integer ``#define``s (e.g. ``BIOXEN_VM_ABI_VERSION``)."""
    result = {}
    for line in preprocess(text).splitlines():
        m = re.match(r"#define (\w+) (-?\d+)$", line)
        if m:
            result[m.group(1)] = int(m.group(2))
    return result


_PROTOTYPE = re.compile(r"([A-Za-z_][\w\s\*]*?)\b(bioxen_vm_\w+)\s*\(([^)]*)\)\s*;", re.S)


def prototypes(text: str) -> Dict[str, str]:
    """``{function name: normalised prototype}`` of every function the header declares."""
    cdef = preprocess(text)
    found = {}
    for m in _PROTOTYPE.finditer(cdef):
        ret = " ".join(m.group(1).split())
        ret = ret.split(";")[-1].split("}")[-1].strip()
        args = " ".join(m.group(3).split())
        found[m.group(2)] = f"{ret} {m.group(2)}({args})"
    return found
