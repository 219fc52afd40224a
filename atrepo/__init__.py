"""atrepo: AT Protocol (Bluesky) repositories as data.

Read a repository CAR offline::

    >>> import atrepo
    >>> snap = atrepo.read_car("examples/data/sample.car")
    >>> snap.records.columns
    ['did', 'collection', 'rkey', 'uri', 'cid', 'record']

Building blocks live in submodules: :mod:`atrepo.cbor`, :mod:`atrepo.datamodel`,
:mod:`atrepo.car`, :mod:`atrepo.mst`, :mod:`atrepo.crypto`, :mod:`atrepo.syntax`.

Names are imported on first use, so ``import atrepo.cbor`` (or a worker process) does not
pay for polars and pydantic.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    AtrepoError,
    CarError,
    ClientClosed,
    DecodeError,
    MstError,
    RateLimited,
    RepoUnavailable,
    ResolutionError,
    SandboxError,
    SignatureError,
    TransportError,
    UsageError,
)

if TYPE_CHECKING:
    from . import car, cbor, crypto, datamodel, dataset, lexicon, mst, syntax
    from ._diff import diff
    from ._read import read_car
    from ._shortcuts import configure, get_repo, list_repos, resolve
    from .cid import CID, cid_for
    from .client import AsyncClient, Client
    from .dataset import Dataset, open_dataset
    from .identity import DidDocument, Identity
    from .lexicon import lexicon_schema, validate_record
    from .retry import RetryPolicy
    from ._accel import accelerated
    from .models import Commit
    from .repos import RepoRef
    from .snapshot import RepoSnapshot

__all__ = [
    "AsyncClient",
    "AtrepoError",
    "CID",
    "CarError",
    "Client",
    "ClientClosed",
    "Commit",
    "Dataset",
    "DecodeError",
    "DidDocument",
    "Identity",
    "MstError",
    "RateLimited",
    "RepoRef",
    "RepoSnapshot",
    "RepoUnavailable",
    "ResolutionError",
    "RetryPolicy",
    "SandboxError",
    "SignatureError",
    "TransportError",
    "UsageError",
    "accelerated",
    "car",
    "cbor",
    "cid_for",
    "configure",
    "crypto",
    "datamodel",
    "dataset",
    "diff",
    "get_repo",
    "lexicon",
    "lexicon_schema",
    "list_repos",
    "mst",
    "open_dataset",
    "read_car",
    "resolve",
    "syntax",
    "validate_record",
]

__version__ = "0.1.0"

# public name -> (module, attribute or None for the module itself)
_LAZY: dict[str, tuple[str, str | None]] = {
    "CID": (".cid", "CID"),
    "accelerated": ("._accel", "accelerated"),
    "cid_for": (".cid", "cid_for"),
    "Commit": (".models", "Commit"),
    "RepoRef": (".repos", "RepoRef"),
    "RetryPolicy": (".retry", "RetryPolicy"),
    "RepoSnapshot": (".snapshot", "RepoSnapshot"),
    "read_car": ("._read", "read_car"),
    "diff": ("._diff", "diff"),
    "Client": (".client", "Client"),
    "AsyncClient": (".client", "AsyncClient"),
    "Dataset": (".dataset", "Dataset"),
    "open_dataset": (".dataset", "open_dataset"),
    "DidDocument": (".identity", "DidDocument"),
    "Identity": (".identity", "Identity"),
    "resolve": ("._shortcuts", "resolve"),
    "configure": ("._shortcuts", "configure"),
    "get_repo": ("._shortcuts", "get_repo"),
    "list_repos": ("._shortcuts", "list_repos"),
    "lexicon_schema": (".lexicon", "lexicon_schema"),
    "validate_record": (".lexicon", "validate_record"),
    **{name: (f".{name}", None) for name in ("car", "cbor", "crypto", "datamodel", "dataset",
                                              "lexicon", "mst", "syntax")},
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'atrepo' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name, __name__)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
