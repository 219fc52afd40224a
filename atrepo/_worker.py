"""Worker process for :mod:`atrepo._parallel`: decode record batches sent over stdin.

Protocol: each message is an 8-byte little-endian length and a pickle. Requests are
:class:`~atrepo._records.Batch`; replies are ``(True, DecodedBatch)`` or ``(False,
exception)``. The process ends when stdin closes.
"""

from __future__ import annotations

import gc
import pickle
import struct
import sys

from ._records import decode_batch

_HEADER = struct.Struct("<Q")


def main() -> None:
    gc.disable()  # batches build no reference cycles; see _records.gc_paused
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while head := stdin.read(_HEADER.size):
        batch = pickle.loads(stdin.read(_HEADER.unpack(head)[0]))
        try:
            reply = (True, decode_batch(batch))
        except Exception as exc:  # sent back to the caller, which re-raises it
            reply = (False, exc)
        payload = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
        stdout.write(_HEADER.pack(len(payload)) + payload)
        stdout.flush()


if __name__ == "__main__":
    main()
