"""How the session core reaches a cluster: a :class:`ClusterRef` and a :class:`Transport`.

:class:`ClusterRef` is *the* connection profile of a cluster — name, jump hosts,
user, extra ssh config, scheduler backend — in one shape everywhere: settings
make one, a request carries one, a session record is read back into one.

A :class:`Transport` runs commands on the cluster's submit host and makes the
argv of a forward to a compute node. :class:`~.openssh.OpenSSHTransport` is
the real one (the system ``ssh``); :class:`~.testing.FakeTransport` runs the
same commands on this machine, for tests, like httpx's ``MockTransport``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from ..proc import Completed
from ..state import SessionRecord

DEFAULT_SCHEDULER = "slurm"


@dataclasses.dataclass(frozen=True)
class ClusterRef:
    """How to reach a cluster's submit host, and which scheduler runs there."""

    name: str | None
    jump: tuple[str, ...]
    user: str | None = None
    ssh_includes: tuple[str, ...] = ()
    scheduler: str = DEFAULT_SCHEDULER
    connect_timeout_s: int | None = None  # None: the user's ssh config decides
    multiplex: bool = os.name != "nt"  # Windows' OpenSSH has no connection sharing

    @property
    def key(self) -> tuple[object, ...]:
        """Sessions with the same key can share one connection."""
        return (self.jump, self.user, self.ssh_includes, self.scheduler, self.connect_timeout_s,
                self.multiplex)  # fmt: skip

    @property
    def where(self) -> str:
        """How to name the cluster to a user: its profile name, else its jump chain."""
        return self.name or " -> ".join(self.jump)

    @classmethod
    def of(cls, record: SessionRecord) -> ClusterRef:
        return cls(record.cluster, tuple(record.jump), record.user,
                   tuple(record.ssh_includes), record.scheduler or DEFAULT_SCHEDULER,
                   record.connect_timeout_s,
                   os.name != "nt" if record.multiplex is None else record.multiplex)  # fmt: skip

    def record_fields(self) -> dict[str, Any]:
        """The :class:`~nodetunnel.state.SessionRecord` fields that store this reference."""
        return {"cluster": self.name, "jump": list(self.jump), "user": self.user,
                "ssh_includes": list(self.ssh_includes), "scheduler": self.scheduler,
                "connect_timeout_s": self.connect_timeout_s, "multiplex": self.multiplex}  # fmt: skip


class Transport(Protocol):
    """Commands on a cluster's submit host and forwards to its nodes (see the module doc).

    ``run`` is a :class:`~nodetunnel.scheduler.base.CommandRunner`; a connection
    failure raises :class:`~nodetunnel.errors.SshError`. ``connect`` prepares a
    fresh connection (the first command authenticates); ``adopt`` continues the
    connections another process prepared (a hand-over); ``close`` ends them.
    """

    @property
    def submit_host(self) -> str: ...

    @property
    def chain(self) -> str:
        """The hops, for messages: ``login -> gateway``."""
        ...

    def connect(self) -> None: ...

    def adopt(self) -> None: ...

    def close(self) -> None: ...

    def shielded(self) -> AbstractContextManager[None]:
        """Meanwhile, commands are out of the terminal's reach (for the clean-up)."""
        ...

    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        timeout_s: float = 60,
        check: bool = True,
    ) -> Completed: ...

    def __call__(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        timeout_s: float = 60,
        check: bool = True,
    ) -> Completed: ...

    def attached_argv(self, argv: Sequence[str]) -> list[str]:
        """The local argv that runs ``argv`` on the submit host with this terminal attached."""
        ...

    def submit_argv(self, argv: Sequence[str]) -> list[str]:
        """The local argv that runs ``argv`` on the submit host (for --dry-run plans)."""
        ...

    def run_attached(self, argv: Sequence[str]) -> int:
        """Run ``argv`` on the submit host with this terminal attached (its output as it
        comes); return its exit code. A connection failure raises
        :class:`~nodetunnel.errors.SshError`."""
        ...

    def forward_argv(
        self, node: str, local_port: int, remote: str, extra: Sequence[tuple[int, str]] = ()
    ) -> list[str]:
        """The local argv of a process forwarding 127.0.0.1:local_port to ``remote`` on ``node``.

        ``remote`` is a Unix socket path or ``127.0.0.1:PORT`` on the node; ``extra``
        are further ``(local_port, remote)`` forwards over the same connection.
        """
        ...
