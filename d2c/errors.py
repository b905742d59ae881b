"""Error types and the exit codes they map to (DESIGN.md, "Command line").

Every error d2c raises for the user carries one line of text that names the file, the field and
what to do; the command line prints it as ``error: <line>`` and exits with the error's code.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_NO_PLAN = 3


class D2CError(Exception):
    """Base of every error meant for the user: one clear line and an exit code."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(D2CError):
    """Bad input or usage: a malformed file, a wrong option, a missing path. Exit 2."""

    exit_code = EXIT_USAGE


class CredentialsExpired(UsageError):
    """The AWS credentials (an SSO login, a session token) ran out; ``login_hint`` says how to renew them."""

    def __init__(self, message: str, login_hint: str):
        super().__init__(message)
        self.login_hint = login_hint


class WorkError(D2CError):
    """A failure while working: a cloud error, the app failing, a host not answering. Exit 1."""

    exit_code = EXIT_FAILURE


class NoPlanError(D2CError):
    """No plan satisfies the constraints; the message names the binding limit. Exit 3."""

    exit_code = EXIT_NO_PLAN


class HostError(WorkError):
    """A host transport could not connect, authenticate, or complete a transfer."""


class HostKeyMismatch(HostError):
    """A host presented a key other than the one pinned for it: refused, never overwritten."""
