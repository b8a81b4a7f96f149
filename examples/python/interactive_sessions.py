"""Interactive sessions: a Lua REPL without a terminal, on a manager's VM.

    python examples/python/interactive_sessions.py

Each line is evaluated as the standalone `lua` evaluates a typed line (a bare expression
prints its value, an incomplete chunk waits for more lines). Output comes back clean: no
echo, no prompts, no escape codes. read_output(timeout) waits until the input sent so far
has been evaluated, so no sleep is needed.
"""

from bioxen_vm import VMManager

with VMManager() as manager:
    manager.create_interactive_vm("repl")

    # send_input returns at once; read_output collects what the input printed.
    manager.send_input("repl", "x = 42")
    manager.send_input("repl", "print('Value:', x)")
    print("read_output ->", repr(manager.read_output("repl", timeout=5)))

    # A bare expression prints its value, as in the REPL.
    print("1 + 1 ->", repr(manager.execute_interactive_command("repl", "1 + 1")))

    # A multi-line definition: the session waits until the chunk is complete.
    manager.send_input("repl", "function square(n)")
    manager.send_input("repl", "  return n * n")
    manager.send_input("repl", "end")
    print("square(12) ->", repr(manager.execute_interactive_command("repl", "square(12)")))

    # Errors read back as the REPL shows them, and the session goes on.
    out = manager.execute_interactive_command("repl", "error('boom')")
    print("error ->", out.splitlines()[0])
    print("still alive ->", repr(manager.execute_interactive_command("repl", "x")))

    # The session shares its VM's globals with execute_vm_sync on the same VM.
    print("x via execute_vm_sync ->", manager.execute_vm_sync("repl", "return x")["stdout"])

    # Streaming: an attached callback receives output as it is produced.
    chunks = []
    manager.detach_from_vm("repl")
    manager.attach_to_vm("repl", output_callback=chunks.append)
    manager.execute_interactive_command("repl", "for i = 1, 3 do print('tick', i) end")
    print("callback received ->", repr("".join(chunks)))

    print("sessions ->", sorted(manager.list_sessions()))
    manager.terminate_vm_session("repl")
