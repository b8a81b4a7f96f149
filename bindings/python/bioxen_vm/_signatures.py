"""Every function the C library exports, its C signature and its calling convention.

This table is the one place the binding describes the C API. The ctypes backend builds
``argtypes``/``restype`` from it; the cffi backend takes the types from the header (a test
checks both against the header, so the table cannot drift from it). ``kind`` says how a
backend turns a Python call into a C call and back; every backend implements each kind once:

* ``raw``: called as is (no status).
* ``status``: returns a status; nothing comes back.
* ``bytes``/``bool``/``u64``/``size``/``cstr``/``result``: returns a status, and the value
  of the last (out) parameter comes back (``bioxen_vm_bytes`` as Python ``bytes``, freed;
  static strings as ``str``; results as a tuple, freed).
* ``into``: the last two parameters are a result buffer and the out-pointer to its result;
  the backend supplies both (buffers come from a pool shared by all threads, one per call
  in flight, reused call after call) and returns the result as ``result`` does.
* ``read``: ``bioxen_vm_manager_read_output``'s two outputs: ``bytes`` or ``None``.
* ``xapi``: ``bioxen_vm_xapi_call``'s two outputs: the result ``bytes``, or on failure the
  exception gets ``xapi_error`` (the error object's JSON ``bytes``).
* ``callback``: takes a function pointer; each backend binds these by hand.
* ``json``: a package function (a JSON request in, a ``bioxen_vm_bytes`` reply out that
  also holds the error object on failure); :mod:`bioxen_vm.packages` calls these itself.

Abstract C types: ``i32 u32 i64 u64 f64 size bool`` (values), ``str`` (``const char *``,
NUL-terminated or NULL), ``buf`` (``const char *`` followed by its length), ``cstr``
(returned ``const char *``), ``void``, ``void*``, pointers ``T*``, ``rbuf*``/``rbuf**``
(``bioxen_vm_result_buffer``), ``view**`` (``const bioxen_vm_result **``), and the function
pointer types ``log_fn output_fn job_fn progress_fn``.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

Signature = Tuple[str, str, List[str]]

SIGNATURES: Dict[str, Signature] = {
    # library
    "bioxen_vm_version": ("raw", "cstr", []),
    "bioxen_vm_abi_version": ("raw", "u32", []),
    "bioxen_vm_status_name": ("raw", "cstr", ["i32"]),
    "bioxen_vm_last_error_message": ("raw", "cstr", []),
    "bioxen_vm_set_log_callback": ("callback", "i32", ["log_fn", "void*", "i32"]),
    # memory
    "bioxen_vm_bytes_free": ("raw", "void", ["bytes*"]),
    "bioxen_vm_result_free": ("raw", "void", ["result*"]),
    "bioxen_vm_result_buffer_new": ("raw", "i32", ["rbuf**"]),
    "bioxen_vm_result_buffer_free": ("raw", "i32", ["rbuf*"]),
    # standalone VMs
    "bioxen_vm_new": ("u64", "i32", ["str", "u64*"]),
    "bioxen_vm_free": ("status", "i32", ["u64"]),
    "bioxen_vm_execute": ("result", "i32", ["u64", "buf", "size", "str", "u64", "result*"]),
    "bioxen_vm_execute_into": (
        "into", "i32", ["u64", "buf", "size", "str", "u64", "rbuf*", "view**"]),
    "bioxen_vm_execute_async": ("u64", "i32", ["u64", "buf", "size", "str", "u64", "u64*"]),
    "bioxen_vm_interrupt": ("bool", "i32", ["u64", "bool*"]),
    "bioxen_vm_info": ("bytes", "i32", ["u64", "bytes*"]),
    # scripts
    "bioxen_vm_execute_file": ("result", "i32", ["u64", "str", "u64", "result*"]),
    "bioxen_vm_execute_temp_script": ("result", "i32", ["u64", "buf", "size", "u64", "result*"]),
    "bioxen_vm_manager_execute_file": ("result", "i32", ["u64", "str", "str", "u64", "result*"]),
    "bioxen_vm_manager_execute_temp_script": (
        "result", "i32", ["u64", "str", "buf", "size", "u64", "result*"]),
    # networked VMs
    "bioxen_vm_net_run": ("result", "i32", ["u64", "str", "str", "u64", "result*"]),
    "bioxen_vm_manager_net_start": ("u64", "i32", ["u64", "str", "str", "str", "u64", "u64*"]),
    "bioxen_vm_manager_setup_p2p_cluster": (
        "bytes", "i32", ["u64", "str", "size", "i64", "f64", "f64", "str", "bytes*"]),
    "bioxen_vm_validate_port": ("status", "i32", ["i64"]),
    "bioxen_vm_validate_host": ("status", "i32", ["str"]),
    "bioxen_vm_script_template": ("bytes", "i32", ["str", "str", "bytes*"]),
    # jobs
    "bioxen_vm_job_wait": ("result", "i32", ["u64", "u64", "result*"]),
    "bioxen_vm_job_status": ("cstr", "i32", ["u64", "cstr*"]),
    "bioxen_vm_job_cancel": ("bool", "i32", ["u64", "bool*"]),
    "bioxen_vm_job_free": ("status", "i32", ["u64"]),
    "bioxen_vm_job_on_done": ("callback", "i32", ["u64", "job_fn", "void*"]),
    # managers
    "bioxen_vm_manager_new": ("u64", "i32", ["str", "u64*"]),
    "bioxen_vm_manager_free": ("status", "i32", ["u64"]),
    "bioxen_vm_manager_create_vm": ("status", "i32", ["u64", "str", "str"]),
    "bioxen_vm_manager_remove_vm": ("status", "i32", ["u64", "str"]),
    "bioxen_vm_manager_execute": (
        "result", "i32", ["u64", "str", "buf", "size", "str", "u64", "result*"]),
    "bioxen_vm_manager_execute_into": (
        "into", "i32", ["u64", "str", "buf", "size", "str", "u64", "rbuf*", "view**"]),
    "bioxen_vm_manager_execute_async": (
        "u64", "i32", ["u64", "str", "buf", "size", "str", "u64", "u64*"]),
    "bioxen_vm_manager_interrupt": ("bool", "i32", ["u64", "str", "bool*"]),
    "bioxen_vm_manager_vm_info": ("bytes", "i32", ["u64", "str", "bytes*"]),
    "bioxen_vm_manager_list_vms": ("bytes", "i32", ["u64", "bytes*"]),
    "bioxen_vm_manager_stats": ("bytes", "i32", ["u64", "bytes*"]),
    "bioxen_vm_manager_wait_for_vm": ("result", "i32", ["u64", "str", "u64", "result*"]),
    "bioxen_vm_manager_cancel_vm": ("bool", "i32", ["u64", "str", "bool*"]),
    "bioxen_vm_manager_vm_status": ("cstr", "i32", ["u64", "str", "cstr*"]),
    # sessions
    "bioxen_vm_manager_create_interactive_vm": ("status", "i32", ["u64", "str", "str", "bool"]),
    "bioxen_vm_manager_attach": ("callback", "i32", ["u64", "str", "output_fn", "void*"]),
    "bioxen_vm_manager_detach": ("status", "i32", ["u64", "str"]),
    "bioxen_vm_manager_is_attached": ("bool", "i32", ["u64", "str", "bool*"]),
    "bioxen_vm_manager_send_input": ("status", "i32", ["u64", "str", "buf", "size"]),
    "bioxen_vm_manager_read_output": (
        "read", "i32", ["u64", "str", "u64", "i32", "bytes*", "bool*"]),
    "bioxen_vm_manager_execute_interactive_command": (
        "bytes", "i32", ["u64", "str", "buf", "size", "u64", "bytes*"]),
    "bioxen_vm_manager_interrupt_session": ("bool", "i32", ["u64", "str", "bool*"]),
    "bioxen_vm_manager_terminate_session": ("status", "i32", ["u64", "str"]),
    "bioxen_vm_manager_clone_session": ("status", "i32", ["u64", "str", "str"]),
    "bioxen_vm_manager_list_sessions": ("bytes", "i32", ["u64", "bytes*"]),
    # clusters
    "bioxen_vm_manager_create_cluster": ("bytes", "i32", ["u64", "str", "size", "str", "bytes*"]),
    "bioxen_vm_manager_create_interactive_cluster": (
        "bytes", "i32", ["u64", "str", "size", "str", "bytes*"]),
    "bioxen_vm_manager_broadcast": (
        "bytes", "i32", ["u64", "str", "buf", "size", "str", "u64", "bytes*"]),
    "bioxen_vm_wait_for_cluster": ("bytes", "i32", ["str", "u64", "bytes*"]),
    "bioxen_vm_manager_cluster_status": ("bytes", "i32", ["u64", "str", "bytes*"]),
    "bioxen_vm_manager_cleanup_cluster": ("size", "i32", ["u64", "str", "size*"]),
    "bioxen_vm_manager_broadcast_to_sessions": (
        "bytes", "i32", ["u64", "str", "buf", "size", "u64", "bytes*"]),
    "bioxen_vm_manager_shutdown_all": ("size", "i32", ["u64", "size*"]),
    "bioxen_vm_manager_list_persistent_vms": ("bytes", "i32", ["u64", "bytes*"]),
    # package environments
    **{f"bioxen_vm_packages_{op}": ("json", "i32", ["str", "bytes*"]) for op in (
        "create", "open", "environments", "remove_env", "list", "show", "search", "lock",
        "health", "profiles")},
    **{f"bioxen_vm_packages_{op}": ("json", "i32", ["str", "progress_fn", "void*", "bytes*"])
       for op in ("install", "remove", "sync", "bootstrap")},
    # XAPI sessions and xcpng VMs
    "bioxen_vm_xapi_open": ("u64", "i32", ["str", "u64*"]),
    "bioxen_vm_xapi_call": ("xapi", "i32", ["u64", "str", "str", "bytes*", "bytes*"]),
    "bioxen_vm_xapi_info": ("bytes", "i32", ["u64", "bytes*"]),
    "bioxen_vm_xapi_close": ("status", "i32", ["u64"]),
    "bioxen_vm_xcpng_new": ("callback", "i32", ["str", "progress_fn", "void*", "u64*"]),
    "bioxen_vm_manager_create_xcpng_vm": (
        "callback", "i32", ["u64", "str", "str", "bool", "progress_fn", "void*"]),
    "bioxen_vm_xcpng_sweep": ("bytes", "i32", ["u64", "bool", "bytes*"]),
}

PREFIX = "bioxen_vm_"


def short_name(c_name: str) -> str:
    """``bioxen_vm_manager_execute`` -> ``manager_execute`` (the backend attribute name)."""
    return c_name[len(PREFIX):]


#: A result as backends return it: (success, return_code, stdout, stderr, values_json,
#: error_message, duration_ns, output_dropped); the byte strings are copies.
ResultTuple = Tuple[bool, int, bytes, bytes, bytes, bytes, int, int]
