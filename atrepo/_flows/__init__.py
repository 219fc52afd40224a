"""Sans-IO protocol flows: generators that yield effects and never perform them.

One module per concern: :mod:`.effects` (what flows yield and get back), :mod:`.policy`
(retry decisions), :mod:`.xrpc` (URLs, the retry loop, replies), :mod:`.repo` (one
repository's endpoints), :mod:`.listing` (listings and cursors), :mod:`.identity` (handles,
DIDs, documents). The flows a client runs are re-exported here.
"""

from .listing import list_repos_by_collection_page, list_repos_page, walk_cursor
from .repo import describe_repo, get_latest_commit, get_repo

__all__ = ["describe_repo", "get_latest_commit", "get_repo", "list_repos_by_collection_page",
           "list_repos_page", "walk_cursor"]
