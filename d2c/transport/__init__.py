"""Host transports shared by the profiler and the executor: run commands and move files.

``LocalHost`` runs on this machine (subprocess); ``SSHHost`` runs on a VM or an EC2 instance over
SSH (paramiko). Both satisfy :class:`d2c.transport.base.Host`, so code above them does not care
which one it holds. ``SSHHost`` lives in ``d2c.transport.ssh`` and is imported from there, so that
paramiko is only loaded by the commands that need it.
"""

from d2c.transport.base import CommandResult, Host, OutputTail, RunningCommand
from d2c.transport.local import LocalHost

__all__ = ["CommandResult", "Host", "LocalHost", "OutputTail", "RunningCommand"]
