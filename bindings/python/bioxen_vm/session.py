"""Interactive sessions: a Lua REPL without a terminal on one of a manager's VMs.

Input is evaluated line by line as the standalone ``lua`` evaluates typed lines (a bare
expression prints its value, an incomplete chunk waits for more lines); output comes back
clean: no echo, no prompt, no escape codes. The session shares its VM's globals with
``execute_*`` calls on that VM.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Union

from .exceptions import InteractiveSessionError, SessionAlreadyExistsError, SessionNotFoundError

if TYPE_CHECKING:
    from .manager import VMManager
    from .vm import LuaProcess

OutputCallback = Callable[[str], Any]


class InteractiveSession:
    """The session of the VM ``session_id`` in a manager (the original's class).

    Objects of this class are light handles on the manager's session: several of them may
    name the same session. ``vm_instance`` is the VM object the session belongs to.
    """

    def __init__(self, session_id: str, vm_instance: Optional["LuaProcess"] = None,
                 lua_executable: str = "lua", debug_mode: bool = False, *,
                 manager: "VMManager") -> None:
        self.session_id = session_id
        self.vm_instance = vm_instance
        self.name = f"InteractiveSession_{session_id}"
        self.lua_executable = lua_executable
        self.debug_mode = debug_mode
        self._manager = manager

    @property
    def manager(self) -> "VMManager":
        """The manager holding the session."""
        return self._manager

    def __repr__(self) -> str:
        return f"InteractiveSession(session_id={self.session_id!r})"

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Creates the session (not attached) if it does not exist.

        Raises ``InteractiveSessionError("Session already running")`` if it exists.
        """
        if self.is_running():
            raise InteractiveSessionError("Session already running")
        self._manager._open_session(self.session_id)

    def is_running(self) -> bool:
        """True while the session exists (it was created and not terminated)."""
        return self._manager._session_exists(self.session_id)

    def terminate(self) -> None:
        """Ends the session (an evaluation running in it is interrupted); the VM stays."""
        self._manager.terminate_vm_session(self.session_id)

    def interrupt(self) -> bool:
        """Stops the running evaluation (as Ctrl-C); the session and its state stay."""
        return self._manager.interrupt_session(self.session_id)

    def __enter__(self) -> "InteractiveSession":
        if not self.is_running():
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._manager.closed:
            self.terminate()

    # --- attaching ------------------------------------------------------------------------

    def attach(self, output_callback: Optional[OutputCallback] = None) -> None:
        """Attaches; ``output_callback(text)`` then receives output as it is produced.

        Raises :class:`~bioxen_vm.exceptions.AttachError` if already attached.
        """
        self._manager.attach_to_vm(self.session_id, output_callback)

    def detach(self) -> None:
        """Detaches (input still works). Raises ``DetachError`` if not attached."""
        self._manager._detach(self.session_id, quiet=False)

    def is_attached(self) -> bool:
        """True while attached."""
        return self._manager._is_attached(self.session_id)

    # --- input and output -----------------------------------------------------------------

    def send_input(self, input_str: Union[str, bytes]) -> None:
        """Queues a line of input (a newline is added when missing); returns at once."""
        self._manager.send_input(self.session_id, input_str)

    def send_command(self, command: Union[str, bytes, List[str]]) -> None:
        """The original's ``send_command``: a list is joined with newlines."""
        if isinstance(command, list):
            command = "\n".join(command)
        self._manager.send_input(self.session_id, command)

    def read_output(self, timeout: Optional[float] = 0.1) -> Optional[str]:
        """Buffered output (stdout and stderr in order), or None when there is none.

        With a ``timeout`` (seconds) it first waits, up to that long, until all input sent so
        far is evaluated; ``timeout=0`` does not wait; None waits without limit.
        """
        return self._manager.read_output(self.session_id, timeout)

    def execute_and_wait(self, command: Union[str, bytes], timeout: float = 5.0) -> str:
        """Sends ``command``, waits up to ``timeout`` to be idle, returns all its output."""
        return self._manager.execute_interactive_command(self.session_id, command, timeout)


class SessionManager:
    """Sessions by id (the original's ``SessionManager``).

    ``VMManager.session_manager`` is the session manager of that manager's VMs. A
    ``SessionManager()`` created on its own owns a private :class:`VMManager` (freed by
    :meth:`close`, a ``with`` block or garbage collection); its sessions run on VMs created
    in it under the session ids.
    """

    def __init__(self, debug_mode: bool = False, *, manager: Optional["VMManager"] = None
                 ) -> None:
        self.debug_mode = debug_mode
        self._owned = manager is None
        if manager is None:
            from .manager import VMManager

            manager = VMManager(debug_mode=debug_mode)
        self._manager = manager

    @property
    def manager(self) -> "VMManager":
        """The VM manager the sessions live in."""
        return self._manager

    def close(self) -> None:
        """Frees the private manager (only for a standalone SessionManager)."""
        if self._owned:
            self._manager.close()

    def __enter__(self) -> "SessionManager":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._owned:
            self.close()
        else:
            self.cleanup_all()

    def __repr__(self) -> str:
        return f"SessionManager(sessions={len(self.list_sessions())})"

    def create_session(self, session_id: str, vm_instance: Optional["LuaProcess"] = None
                       ) -> InteractiveSession:
        """Creates and starts a session (not attached) on the VM ``session_id``.

        The VM is created if the manager has none of that id. A session that exists already
        raises ``SessionAlreadyExistsError("Session 'X' already exists")``. ``vm_instance``
        is kept as the session's ``vm_instance``.
        """
        manager = self._manager
        if session_id in manager.list_vms():
            if manager._session_exists(session_id):
                raise SessionAlreadyExistsError(f"Session '{session_id}' already exists")
            manager._open_session(session_id)
            session = manager._session_object(session_id)
        else:
            session = manager.create_interactive_vm(session_id, auto_attach=False)
        if vm_instance is not None:
            session.vm_instance = vm_instance
        return session

    def get_session(self, session_id: str) -> Optional[InteractiveSession]:
        """The session, or None if there is none."""
        if not self._manager._session_exists(session_id):
            return None
        return self._manager._session_object(session_id)

    def list_sessions(self) -> Dict[str, Dict[str, Any]]:
        """``{id: {attached, running, last_activity, ...}}`` of the live sessions."""
        return self._manager.list_interactive_sessions()

    def terminate_session(self, session_id: str) -> None:
        """Ends the session; silent when there is none (as the original)."""
        try:
            self._manager.terminate_vm_session(session_id)
        except SessionNotFoundError:
            pass

    def remove_session(self, session_id: str) -> None:
        """Same as :meth:`terminate_session` (the original did the same in both)."""
        self.terminate_session(session_id)

    def cleanup_all(self) -> None:
        """Ends every session."""
        if self._manager.closed:
            return
        for session_id in list(self.list_sessions()):
            self.terminate_session(session_id)
