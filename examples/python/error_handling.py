"""Error handling: what is a result, and what is an exception.

    python examples/python/error_handling.py

A Lua error is a result (success=False), never an exception. Timeouts, interrupts, memory
limits and misuse are exceptions from the original library's hierarchy (every one is a
LuaVMError).
"""

import threading
import time

from bioxen_vm import (LuaProcessError, LuaVMError, SessionNotFoundError, VMManager,
                       VMTimeoutError, create_vm)
from bioxen_vm.exceptions import VMInterruptedError, VMMemoryLimitError

with create_vm("errors", memory_limit=8 * 1024 * 1024) as vm:
    # 1. A Lua error is a result with the message and a traceback.
    result = vm.execute_string("local t = nil\nreturn t.field")
    print("Lua error -> success:", result["success"], "return_code:", result["return_code"])
    print("  message:", result["stderr"].splitlines()[0])

    # 2. A syntax error too.
    result = vm.execute_string("return 1 +")
    print("syntax error -> success:", result["success"])

    # 3. A timeout raises VMTimeoutError (a LuaProcessError, as the original raised); the
    #    VM keeps its state and stays usable.
    vm.execute_string("kept = 'still here'")
    try:
        vm.execute_string("while true do end", timeout=0.1)
    except VMTimeoutError as exc:
        print("timeout ->", type(exc).__name__, "|", exc,
              "| is a LuaProcessError:", isinstance(exc, LuaProcessError))
    print("after the timeout:", vm.execute_string("return kept")["stdout"])

    # 4. The memory limit stops runaway allocation; the VM stays usable.
    try:
        vm.execute_string("local t = {} for i = 1, 1e8 do t[i] = i end")
    except VMMemoryLimitError as exc:
        print("memory limit ->", type(exc).__name__)
    print("after the memory limit:", vm.execute_string("return 1 + 1")["stdout"])

    # 5. interrupt() stops running code from another thread (it returns True once it
    #    stopped something, so the helper retries until the loop has started).
    def stop_the_loop():
        while not vm.interrupt():
            time.sleep(0.01)

    stopper = threading.Thread(target=stop_the_loop)
    stopper.start()
    try:
        vm.execute_string("while true do end")
    except VMInterruptedError as exc:
        print("interrupt ->", type(exc).__name__)
    stopper.join()

    # 6. Empty code is an argument error (a ValueError, as in the original).
    try:
        vm.execute_string("   ")
    except ValueError as exc:
        print("empty code ->", exc)

    # 7. The sandbox: no file or process access in a default VM.
    result = vm.execute_string("return io.open, os.execute, require")
    print("io.open, os.execute, require ->", result["stdout"])

# 8. Manager errors keep the original's classes and messages.
with VMManager() as manager:
    try:
        manager.attach_to_vm("nonexistent")
    except SessionNotFoundError as exc:
        print("unknown session ->", type(exc).__name__, "|", exc)
    manager.create_vm("a")
    try:
        manager.create_vm("a")
    except ValueError as exc:
        print("duplicate id ->", exc)
    try:
        manager.create_vm("x", vm_type="xcpng")
    except ValueError as exc:
        print("xcpng without a config ->", type(exc).__name__, "|", exc)
