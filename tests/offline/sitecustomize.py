"""Test helper: an interpreter started with this folder on PYTHONPATH has no network.

Every network connection and host-name lookup fails at once, as on a compute node without
internet access. Local (Unix-domain) sockets keep working, as they do on such a node (the
workflow's warm-start server uses one). Used by the offline-weights tests for the subprocesses
they start.
"""

import socket

_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex


def _refuse(*args, **kwargs):
    raise OSError("network access is blocked in this test")


def _local_only(original):
    def connect(self, address):
        if self.family == socket.AF_UNIX:
            return original(self, address)
        return _refuse()

    return connect


socket.socket.connect = _local_only(_connect)
socket.socket.connect_ex = _local_only(_connect_ex)
socket.getaddrinfo = _refuse
socket.create_connection = _refuse
