"""The transport layer: how nodetunnel reaches a cluster (see :mod:`.base`)."""

from __future__ import annotations

from .base import ClusterRef, Transport
from .openssh import OpenSSH, OpenSSHTransport, SshSettings

__all__ = ["ClusterRef", "OpenSSH", "OpenSSHTransport", "SshSettings", "Transport"]
