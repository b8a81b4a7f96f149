"""Python values to C arguments and C results to Python values (shared by all objects)."""

from __future__ import annotations

import json
import math
from typing import Any, Dict, Mapping, Optional, Sequence, Union

from ._signatures import ResultTuple

Code = Union[str, bytes, bytearray, memoryview]
Timeout = Optional[float]

#: The largest wait the C API is asked for when Python says "no limit" (about 10 years).
FOREVER_MS = 10 * 365 * 24 * 3600 * 1000


def text_arg(value: Any, what: str) -> bytes:
    """An id, pattern or other NUL-terminated string argument, as UTF-8 bytes.

    ``str`` is encoded (a lone surrogate raises UnicodeEncodeError, a ValueError); bytes
    are passed as they are (the library checks UTF-8 and answers INVALID_UTF8). An embedded
    NUL would silently cut the string short in C, so it is refused here.
    """
    if isinstance(value, str):
        data = value.encode("utf-8")
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
    else:
        raise TypeError(f"{what} must be str, not {type(value).__name__}")
    if b"\0" in data:
        raise ValueError(f"{what} must not contain NUL characters")
    return data


class IdCache:
    """``text_arg`` for ids, remembering the encoding of recent ``str`` ids (bounded)."""

    __slots__ = ("_cache",)

    def __init__(self) -> None:
        self._cache: Dict[str, bytes] = {}

    def __call__(self, value: Any, what: str = "vm_id") -> bytes:
        if type(value) is str:
            data = self._cache.get(value)
            if data is None:
                data = text_arg(value, what)
                if len(self._cache) >= 4096:
                    self._cache.clear()
                self._cache[value] = data
            return data
        return text_arg(value, what)


def code_arg(value: Any, what: str = "lua_code") -> bytes:
    """Lua code (str or bytes; it may contain NUL: it is passed with its length)."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{what} must be str or bytes, not {type(value).__name__}")


#: "No arguments" / "default options": the C API takes "" like NULL for its JSON inputs,
#: and an empty byte string passes through every backend without conversion.
NO_JSON = b""


def args_arg(args: Optional[Sequence[Any]]) -> bytes:
    """``args`` as a JSON array (arriving as the chunk's ``...``), or ``NO_JSON``."""
    if args is None:
        return NO_JSON
    if isinstance(args, (str, bytes, bytearray, Mapping)) or not isinstance(args, Sequence):
        raise TypeError(f"args must be a list or tuple, not {type(args).__name__}")
    try:
        return json.dumps(list(args), allow_nan=False, separators=(",", ":")).encode("utf-8")
    except ValueError as exc:  # NaN/Infinity, circular references
        raise ValueError(f"args cannot be passed to Lua as JSON: {exc}") from None


_ceil = math.ceil


def timeout_ms(timeout: Any, what: str = "timeout", none_ms: int = 0) -> int:
    """Seconds (``None``: no limit) as the C API's milliseconds (rounded up, never 0)."""
    if timeout is None:
        return none_ms
    kind = type(timeout)
    if (kind is float or kind is int) and 0 < timeout < 1e9:  # the common case, quickly
        return _ceil(timeout * 1000)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"{what} must be a number of seconds or None, "
                        f"not {type(timeout).__name__}")
    if math.isnan(timeout) or timeout < 0:
        raise ValueError(f"{what} must be a non-negative number of seconds, not {timeout!r}")
    if math.isinf(timeout):
        return none_ms
    ms = math.ceil(timeout * 1000)
    return max(1, min(ms, FOREVER_MS)) if timeout > 0 else 0


def options_arg(options: Mapping[str, Any]) -> bytes:
    """Options as the JSON object the C API takes (keys whose value is None left out)."""
    clean = {k: v for k, v in options.items() if v is not None}
    if not clean:
        return NO_JSON
    try:
        return json.dumps(clean, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise TypeError(f"options cannot be passed as JSON: {exc}") from None


def with_config(config: Optional[Mapping[str, Any]], explicit: Mapping[str, Any],
                default_lua: bool) -> Dict[str, Any]:
    """A kind's ``config`` mapping under the explicit options: an explicit value (not
    None) wins, except a ``lua_executable`` left at its default when ``default_lua``."""
    if config is None:
        return dict(explicit)
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a mapping, not {type(config).__name__}")
    merged: Dict[str, Any] = dict(config)
    for k, v in explicit.items():
        if v is None or (k == "lua_executable" and default_lua and k in config):
            continue
        merged[k] = v
    return merged


def decode(data: bytes) -> str:
    """Library output as text (invalid UTF-8 replaced, as the original decoded it)."""
    return data.decode("utf-8", "replace")


def json_value(data: bytes) -> Any:
    """A JSON answer of the library."""
    return json.loads(data)


_SCALARS = (int, float, str, bool, type(None))
_values_cache: Dict[bytes, tuple] = {}


def values_of(data: bytes) -> list:
    """The returned values (a JSON array) as a new list.

    Decoding JSON costs more than the whole native call on the hot path, and repeated
    executions tend to return the same few values: arrays of scalars up to 64 bytes are
    remembered (a bounded table of immutable tuples; each call gets its own list).
    """
    if data == b"[]" or not data:
        return []
    cached = _values_cache.get(data)
    if cached is not None:
        return list(cached)
    values = json.loads(data)
    if len(data) <= 64 and all(type(v) in _SCALARS for v in values):
        if len(_values_cache) >= 1024:
            _values_cache.clear()
        _values_cache[data] = tuple(values)
    return values


def result_dict(r: ResultTuple) -> Dict[str, Any]:
    """An execution result as the original's dict, plus ``values``, ``error``, ``duration``.

    ``stdout``/``stderr`` are stripped at both ends, as the original did; ``values`` is the
    returned values (decoded JSON), ``error`` the message and traceback of a Lua error (None
    on success), ``duration`` the execution time in seconds.
    """
    success, return_code, out, err, values, error, duration_ns, _dropped = r
    return {
        "stdout": out.decode("utf-8", "replace").strip() if out else "",
        "stderr": err.decode("utf-8", "replace").strip() if err else "",
        "return_code": return_code,
        "success": bool(success),
        "values": values_of(values),
        "error": error.decode("utf-8", "replace") if error else None,
        "duration": duration_ns / 1e9,
    }


def cluster_result(entry: Dict[str, Any]) -> Dict[str, Any]:
    """One entry of ``bioxen_vm_wait_for_cluster`` in the shape of :func:`result_dict`."""
    out = dict(entry)
    for key in ("stdout", "stderr"):
        if isinstance(out.get(key), str):
            out[key] = out[key].strip()
    out.setdefault("values", [])
    out.setdefault("error", None)
    out.setdefault("duration", 0.0)
    return out
