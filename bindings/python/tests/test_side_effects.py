"""Nothing is written to the current directory or HOME, and nothing is printed."""

from __future__ import annotations

from conftest import run_python, tree


def test_a_full_workout_writes_and_prints_nothing(tmp_path):
    code = """
        import logging
        import bioxen_vm
        from bioxen_vm.logger import VMLogger, setup_global_logging
        VMLogger(debug_mode=True).info("x")
        setup_global_logging(debug_mode=True)
        with bioxen_vm.create_vm("a", debug_mode=True) as vm:
            vm.execute_string("print('to the result, not the terminal')")
            vm.execute_temp_script("return 1")
            vm.start(); vm.send_input("print(1)"); vm.read_output(1)
        with bioxen_vm.VMManager(debug_mode=True) as m:
            m.create_vm_cluster("c", 2)
            m.wait_for_cluster(m.broadcast_to_cluster("c_*", "print('x') return 1"))
            s = m.create_interactive_vm("i")
            s.execute_and_wait("print('y')")
            m.execute_vm_async("c_000", "error('e')").result()
    """
    r = run_python(code, tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"" and r.stderr == b""
    assert tree(tmp_path) == ["home"]
