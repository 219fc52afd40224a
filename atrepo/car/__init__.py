"""CAR v1 files: a header (DAG-CBOR ``{"roots": [...], "version": 1}``) then blocks.

Each block is ``varint(len) || CID || data`` (https://ipld.io/specs/transport/car/carv1/).
Two ways in:

* :func:`read_car` indexes a whole CAR (bytes, a path, or a binary stream) into a
  :class:`CarFile`, a block store read on demand, bounded in memory (``mem_limit_mb``);
* :class:`CarReader` is a push parser with no I/O: ``feed(chunk)`` returns the blocks a
  chunk completes and ``close()`` checks that nothing was cut off.

Checks: varints are minimal and at most 9 bytes; header and blocks are bounded
(:data:`MAX_HEADER_SIZE`, :data:`MAX_BLOCK_SIZE`); a block must hold a whole CID; the input
must end exactly at a block boundary. With ``verify_cids=True`` (the default) a block is
checked against its CID's whole multihash before it is handed out (:func:`check_block`).

Modules: ``_framing`` (header and block frames, pure), ``_reader`` (the push parser, pure),
``_verify`` (block against CID, pure), ``_index`` (CID -> offset, pure), ``_files`` and
``_store`` (reading files, mapping and spilling), ``_pack`` (growing a store pack's index).

Not to be confused with :func:`atrepo.read_car`, which returns a verified
:class:`~atrepo.RepoSnapshot` of a repository CAR.

Example:
    >>> car = read_car("examples/data/sample.car")
    >>> [str(root)[:8] for root in car.roots], car.get(car.roots[0]) is not None
    (['bafyreid'], True)
"""

from __future__ import annotations

from ._framing import MAX_BLOCK_SIZE, MAX_HEADER_SIZE
from ._reader import CarReader
from ._store import CarFile, read_car
from ._verify import check_block

__all__ = ["MAX_BLOCK_SIZE", "MAX_HEADER_SIZE", "CarFile", "CarReader", "check_block",
           "read_car"]
