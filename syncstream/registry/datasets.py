"""The export's datasets, declared as named columns: each a name, an Arrow type, and the
function that takes its value from a cache file's head or from the dataset's view of the
record. A handler config names its dataset; the export builds each Table from these columns,
in this order, and nothing else (``syncstream.export.tables``).

A dataset is ``{out}/{name}/partition_date=YYYY-MM-DD/``, ``name`` being
``{service}/{record_type}``. Types are named here and made Arrow types where Tables are built,
so that the registry, the writer and the export's main process never import pyarrow.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import Any, Literal

from syncstream.registry.config import Config
from syncstream.registry.views import (
    FileHead,
    block_view,
    event_view,
    follow_view,
    post_view,
    profile_view,
    record_json,
    relay_time,
    rev_time,
    subject_view,
)

__all__ = [
    "ACCOUNT_EVENTS",
    "BLOCKS",
    "BLOCK_COLUMNS",
    "COMMON_COLUMNS",
    "EVENT_COLUMNS",
    "FOLLOWS",
    "FOLLOW_COLUMNS",
    "HEAD_FIELDS",
    "IN_NETWORK_POSTS",
    "LIKES",
    "LIKES_ON_USER_POSTS",
    "ON_USER_SUBJECT_COLUMNS",
    "POSTS",
    "POST_COLUMNS",
    "PROFILES",
    "PROFILE_COLUMNS",
    "QUOTES_OF_USER_POSTS",
    "QUOTE_COLUMNS",
    "REPLIES_TO_USER_POSTS",
    "REPLY_COLUMNS",
    "REPOSTS",
    "REPOSTS_ON_USER_POSTS",
    "SUBJECT_COLUMNS",
    "ArrowType",
    "Column",
    "Dataset",
    "head_column",
    "partition_date",
    "unreadable_column",
    "view_column",
]

ArrowType = Literal["string", "int64", "bool", "timestamp", "list<string>"]
"""``timestamp`` is microseconds, UTC, taken from an ISO 8601 string."""


class Column(Config, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str
    type: ArrowType
    value: Callable[[Any], object]  # of the head (common columns) or of the dataset's view
    nullable: bool = True
    # Taken from the record's content: erased from every version of a record once it is
    # deleted (``syncstream.lake.erase``), so it must be nullable.
    from_record: bool = False


def head_column(name: str, type: ArrowType = "string", *, nullable: bool = True) -> Column:
    """A column taken from the cache file's head (``views.FileHead``, what the export decodes
    of every file); ``ValueError`` for a name the head does not carry."""
    if name not in HEAD_FIELDS:
        raise ValueError(f"{name} is not a field of a cache file's head (one of {', '.join(HEAD_FIELDS)})")
    return Column(name=name, type=type, value=attrgetter(name), nullable=nullable)


def view_column(
    name: str,
    type: ArrowType = "string",
    *,
    nullable: bool = True,
    from_record: bool = True,
    attribute: str = "",
) -> Column:
    """A column taken from the attribute ``name`` (or ``attribute``) of the dataset's view of
    the record; ``from_record=False`` for one the view takes from the file's head instead
    (it outlives the record's deletion)."""
    getter = attrgetter(attribute or name)
    return Column(name=name, type=type, value=getter, nullable=nullable, from_record=from_record)


HEAD_FIELDS: tuple[str, ...] = FileHead.__struct_fields__
"""The head is declared once, by ``FileHead``: head columns are checked against the fields the
export reads them from."""
_head, _view = head_column, view_column

COMMON_COLUMNS: tuple[Column, ...] = (
    _head("uri", nullable=False),
    _head("cid"),
    _head("author_did", nullable=False),
    _head("rkey", nullable=False),
    _head("collection", nullable=False),
    _head("operation", nullable=False),
    _head("record_type", nullable=False),
    _head("seq", "int64"),  # null for a backfilled record
    _head("rev"),
    Column(name="event_time", type="timestamp", value=relay_time),  # null for a backfilled record
    Column(name="rev_time", type="timestamp", value=rev_time),
    _head("synctimestamp", "timestamp", nullable=False),
    Column(name="record_json", type="string", value=record_json, from_record=True),
    _head("source", nullable=False),  # firehose, or backfill
    _head("verified", "bool"),  # the commit's signature checked: true, or null when not checked
)
"""Every dataset's first columns, taken from the cache file's head."""


class Dataset(Config, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str  # "{service}/{record_type}": where its Parquet goes under the output
    view: Callable[[FileHead], Any]  # the record's fields its columns read, decoded once per row
    columns: tuple[Column, ...]  # after the head's, each read from the view
    head_columns: tuple[Column, ...] = COMMON_COLUMNS  # first, each read from the file's head
    author_column: str = "author_did"  # the column of the account a row belongs to (purges)
    # The column naming the study user a row was collected because of (a like of their post):
    # kept when a delete erases the record's content, so that a purge of them still finds it.
    link_column: str | None = None


POST_COLUMNS: tuple[Column, ...] = (
    _view("text"),
    _view("created_at"),
    _view("langs", "list<string>"),
    _view("reply_parent_uri"),
    _view("reply_root_uri"),
    _view("embed_type"),
    _view("embed_record_uri"),
    _view("facets_json"),
    _view("labels", "list<string>"),
    _view("tags", "list<string>"),
)
SUBJECT_COLUMNS: tuple[Column, ...] = (
    _view("subject_uri"),
    _view("subject_cid"),
    _view("created_at"),
    _view("subject_did"),  # the subject's author: the authority of subject_uri
)
# On a study user's post: subject_did is that user, the reason the row was collected, and
# outlives a delete (the link a withdrawal needs).
ON_USER_SUBJECT_COLUMNS: tuple[Column, ...] = (*SUBJECT_COLUMNS[:3], _view("subject_did", from_record=False))
REPLY_COLUMNS: tuple[Column, ...] = (
    *POST_COLUMNS,
    _view("subject_did", attribute="reply_parent_did", from_record=False),
)
QUOTE_COLUMNS: tuple[Column, ...] = (
    *POST_COLUMNS,
    _view("subject_did", attribute="embed_record_did", from_record=False),
)
FOLLOW_COLUMNS: tuple[Column, ...] = (
    _view("follow_status", nullable=False, from_record=False),  # of the file's head
    _view("follower_did", nullable=False, from_record=False),  # the author
    _view("followee_did"),
    _view("created_at"),
)


def _posts(name: str, columns: tuple[Column, ...] = POST_COLUMNS, link: str | None = None) -> Dataset:
    return Dataset(name=name, view=post_view, columns=columns, link_column=link)


def _subjects(name: str, on_user: bool = False) -> Dataset:
    if on_user:
        columns = ON_USER_SUBJECT_COLUMNS
        return Dataset(name=name, view=subject_view, columns=columns, link_column="subject_did")
    return Dataset(name=name, view=subject_view, columns=SUBJECT_COLUMNS)


POSTS = _posts("study_user_activity/post")
LIKES = _subjects("study_user_activity/like")
REPOSTS = _subjects("study_user_activity/repost")
LIKES_ON_USER_POSTS = _subjects("study_user_activity/like_on_user_post", on_user=True)
REPLIES_TO_USER_POSTS = _posts("study_user_activity/reply_to_user_post", REPLY_COLUMNS, "subject_did")
REPOSTS_ON_USER_POSTS = _subjects("study_user_activity/repost_on_user_post", on_user=True)
QUOTES_OF_USER_POSTS = _posts("study_user_activity/quote_of_user_post", QUOTE_COLUMNS, "subject_did")
FOLLOWS = Dataset(name="scraped_user_social_network/follow", view=follow_view, columns=FOLLOW_COLUMNS)
EVENT_COLUMNS: tuple[Column, ...] = (  # an account's event: no record, nothing is ever deleted
    _view("did", nullable=False, from_record=False),
    _view("population", nullable=False, from_record=False),  # the writer's, not the relay's
    _view("event", nullable=False, from_record=False),
    _view("seq", "int64", nullable=False, from_record=False),
    _view("event_time", "timestamp", from_record=False),
    _view("synctimestamp", "timestamp", nullable=False, from_record=False),
    _view("active", "bool"),
    _view("status"),
    _view("handle"),
    _view("rev"),
)
ACCOUNT_EVENTS = Dataset(
    name="population/account_event",
    view=event_view,
    columns=EVENT_COLUMNS,
    head_columns=(),
    author_column="did",
)
IN_NETWORK_POSTS = _posts("in_network_user_activity/post")
PROFILE_COLUMNS: tuple[Column, ...] = (
    _view("display_name"),
    _view("description"),
    _view("avatar_cid"),
    _view("pinned_post_uri"),
)
PROFILES = Dataset(name="study_user_activity/profile", view=profile_view, columns=PROFILE_COLUMNS)
BLOCK_COLUMNS: tuple[Column, ...] = (_view("blocked_did"), _view("created_at"))
BLOCKS = Dataset(name="study_user_activity/block", view=block_view, columns=BLOCK_COLUMNS)

_PROBE = FileHead(
    uri="at://did:plc:probe/app.example.probe/self",
    cid=None,
    author_did="did:plc:probe",
    rkey="self",
    collection="app.example.probe",
    operation="delete",
    record_type="probe",
    seq=1,
    rev="",
    event_time="1970-01-01T00:00:00Z",
    synctimestamp="1970-01-01T00:00:00.000000Z",
)


def unreadable_column(dataset: Dataset) -> str | None:
    """Why a column of ``dataset`` cannot be read (it names an attribute the cache file's head,
    or the dataset's view, does not have), or None. Each column is tried on a delete's head,
    so that a column of the wrong source fails at set-up, not in the middle of an export."""
    for column in (*dataset.head_columns, *dataset.columns):
        if column.from_record and not column.nullable:
            return f"column {column.name} is of the record and not nullable: a delete could not erase it"
    for column in dataset.head_columns:
        try:
            column.value(_PROBE)
        except AttributeError as error:
            return f"column {column.name} is not of the cache file's head ({error})"
    try:
        view = dataset.view(_PROBE)
    except Exception:
        return None
    for column in dataset.columns:
        try:
            column.value(view)
        except AttributeError as error:
            return f"column {column.name} is not of the dataset's view ({error})"
    return None


def partition_date(synctimestamp: str) -> str:
    """The UTC date of a writer timestamp (always ``YYYY-MM-DDT...Z``, written by us)."""
    return synctimestamp[:10]
