"""``pylua_bioxen_vm_lib.utils``: exports ``Curator``, as the original's did."""

from .curator import Curator

__all__ = ["Curator"]
