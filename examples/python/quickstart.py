"""Quickstart: one VM, a few executions, the result dict.

    python examples/python/quickstart.py

A VM is a persistent, sandboxed Lua 5.4 state inside this process: globals survive from
one call to the next, and nothing is spawned.
"""

from bioxen_vm import create_vm

# `with` frees the VM at the end of the block (close() does the same).
with create_vm("quickstart") as vm:
    # Returned values are printed to stdout the way the Lua REPL prints them...
    result = vm.execute_string("return 2 + 2")
    print("2 + 2 =", result["stdout"])

    # ...and are also available decoded, in result["values"].
    result = vm.execute_string("return 'answer', 42, {1, 2, 3}, {x = 1}")
    print("values:", result["values"])

    # State persists: define something in one call, use it in the next.
    vm.execute_string("function greet(name) return 'Hello, ' .. name .. '!' end")
    print(vm.execute_string("return greet('Lua')")["stdout"])

    # print() and io.write() are captured; the dict is the original library's shape
    # (stdout/stderr stripped, return_code, success) plus values, error and duration.
    result = vm.execute_string("for i = 1, 3 do print('line', i) end")
    print("captured stdout:", repr(result["stdout"]))
    print("success:", result["success"], "return_code:", result["return_code"])

    # Arguments are passed as data (never pasted into the source): they arrive as `...`.
    result = vm.execute_string("local a, b = ... return a * b", args=[6, 7])
    print("6 * 7 =", result["values"][0])
