"""``export``: many repositories into one dataset (:mod:`atrepo.dataset`), kept current.

``client.export(source, out_dir)`` commits repositories to the dataset under ``out_dir`` in
batches, one version each, and running it again brings the dataset up to date (see
:class:`~atrepo.dataset.DatasetExport` for what happens to each repository, and
docs/datasets.md). This module turns what an export reads — its *source* — into
:class:`~atrepo.dataset.Target`\\ s:

* a host URL: every repository its ``listRepos`` lists, each with the rev, head and status
  listed, so that an unchanged or inactive repository needs no request; the host is
  recorded with the dataset's versions, and repositories the dataset holds from that host
  but the listing no longer names are visited too;
* a polars frame with a ``did`` column (``list_repos``, ``list_plc``, ...): each DID once,
  with the ``rev``, ``head``, ``active`` and ``status`` columns where it has them, and its
  ``host`` (or ``pds``) column as the host that listed it;
* DIDs or handles (a string is one name): each visited with one ``getLatestCommit``.
"""

from __future__ import annotations

from ._args import check_source, framed_names
from .dataset import BATCH_RECORDS, BATCH_REPOS, DatasetExport, ExportReport, Target
from .repos import RepoRef

__all__ = ["BATCH_RECORDS", "BATCH_REPOS", "DatasetExport", "ExportReport", "Target",
           "listed_target", "source_targets"]

_ARGUMENT = "source"


def listed_target(ref: RepoRef, host: str | None = None) -> Target:
    """The target of one ``listRepos`` entry of ``host`` (inactive ones carry their status)."""
    return Target(ref.did, rev=ref.rev, head=ref.head,
                  status=None if ref.active else ref.status or "inactive", host=host)


def source_targets(source: object) -> str | list[Target]:
    """What an export reads: a host URL to list (str), or the targets ``source`` names.

    Raises:
        UsageError: see :func:`atrepo._args.check_source` and
            :func:`atrepo._args.framed_names`.
    """
    framed = framed_names(source, argument=_ARGUMENT)
    if framed is not None:
        return [Target(did, rev=rev, head=head, status=inactive, host=host)
                for did, host, head, rev, inactive
                in zip(framed.names, framed.hosts, framed.heads, framed.revs, framed.inactive)]
    checked = check_source(source, argument=_ARGUMENT)
    if isinstance(checked, str):
        return checked
    return [Target(name) for name in checked]
