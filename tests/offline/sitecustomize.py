"""Test helper: an interpreter started with this folder on PYTHONPATH has no network.

Every socket connection and host-name lookup fails at once, as on a compute node without
internet access. Used by the offline-weights tests for the subprocesses they start.
"""

import socket


def _refuse(*args, **kwargs):
    raise OSError("network access is blocked in this test")


socket.socket.connect = _refuse
socket.socket.connect_ex = _refuse
socket.getaddrinfo = _refuse
socket.create_connection = _refuse
