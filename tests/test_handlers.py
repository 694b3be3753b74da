"""The handler registry, and writing and reading through one config."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from syncstream.cache import read_records, write_record
from syncstream.errors import ConfigError
from syncstream.registry import reading, selectors
from syncstream.registry.builtin import HANDLERS
from syncstream.registry.datasets import Dataset
from syncstream.registry.handlers import HandlerConfig, Registry, check_registry, record_path
from syncstream.registry.records import CachedRecord, decode_record, encode_record
from syncstream.registry.types import FollowStatus, HandlerKey, Operation

K = HandlerKey


def make(key: HandlerKey, **overrides: object) -> CachedRecord:
    config = HANDLERS[key]
    values: dict[str, object] = {
        "uri": f"at://did:plc:a/{config.collection}/3k",
        "cid": "bafyreiftot7eltsc3f6g4qktykmbv6jcmdmhcx5osscan6jpdxkpqcmcza",
        "author_did": "did:plc:a",
        "rkey": "3k",
        "collection": config.collection,
        "operation": config.operation,
        "record_type": config.record_type,
        "seq": 2**35,
        "rev": "3mptbypluud2a",
        "event_time": "2026-07-04T14:38:07.517Z",
        "synctimestamp": "2026-07-04T14:38:08.000000Z",
        "follow_status": config.follow_status,
        "nested_key": "did:plc:a" if config.nested_path else None,
        "subject_did": "did:plc:b",
        "record": {"text": "hi", "embed": {"ref": {"$link": "bafkrei"}}},
    }
    values.update(overrides)
    return CachedRecord(**values)  # type: ignore[arg-type]


def test_registry_covers_every_key() -> None:
    """HANDLERS has exactly one config per HandlerKey, each under its own key, and passes its check."""
    assert set(HANDLERS) == set(HandlerKey)
    assert all(config.key == key for key, config in HANDLERS.items())
    check_registry(HANDLERS)


@pytest.mark.parametrize("key", list(HandlerKey))
def test_every_key_has_a_config_a_dataset_and_a_delete(key: HandlerKey) -> None:
    """Each key has a config with a dataset; a create names a delete of the same collection,
    record type, follow status and dataset; a delete is some create's counterpart."""
    config = HANDLERS.get(key)
    assert config is not None, f"{key} has no config"
    assert isinstance(config.dataset, Dataset), f"{key} has no dataset"
    if config.collection.startswith("#"):  # an account's event: nothing deletes it
        assert config.delete is None and config.dataset.name == "population/account_event"
    elif config.operation == Operation.CREATE:
        assert config.delete is not None, f"{key} has no delete counterpart"
        delete = HANDLERS[config.delete]
        assert delete.operation == Operation.DELETE
        assert (delete.collection, delete.record_type, delete.follow_status, delete.dataset) == (
            config.collection,
            config.record_type,
            config.follow_status,
            config.dataset,
        )
        assert config.select is not None
    else:
        assert [c.key for c in HANDLERS.values() if c.delete == key] != [], f"{key} deletes nothing"


def test_follow_handlers_and_only_they_carry_a_status() -> None:
    """Exactly the follow handlers carry a follow status; their creates keep the subject DID."""
    with_status = {key for key, config in HANDLERS.items() if config.follow_status is not None}
    assert with_status == {k for k in HandlerKey if "follow_" in k.value}
    subjects = {key for key, config in HANDLERS.items() if config.subject_did is not None}
    assert subjects == {K.FOLLOW_FOLLOWER, K.FOLLOW_FOLLOWEE}


def test_configs_are_frozen() -> None:
    """A handler config cannot be changed after set-up."""
    with pytest.raises(AttributeError):
        HANDLERS[HandlerKey.POST].directory = "elsewhere"  # type: ignore[misc]


def _replace(key: HandlerKey, **changes: object) -> dict[str, HandlerConfig]:
    return {**HANDLERS, key: msgspec.structs.replace(HANDLERS[key], **changes)}


@pytest.mark.parametrize(
    ("registry", "message"),
    [
        ({k: c for k, c in HANDLERS.items() if k != K.DELETE_REPOST}, "names delete_repost as its delete"),
        (_replace(K.REPOST, directory="study_user_activity/create/like"), "share the directory"),
        (_replace(K.REPOST, directory="study_user_activity/create/like/x"), "share the directory"),
        (_replace(K.REPOST, directory="study_user_activity/../x"), "not a directory under the cache root"),
        (_replace(K.REPOST, directory="/abs"), "not a directory under the cache root"),
        (_replace(K.REPOST, select=None), "has no selector"),
        (
            _replace(K.REPOST, path_strategy=lambda r: f"{r.rkey}.txt"),
            "names a file '3ksample.txt', not a .json",
        ),
        (_replace(K.REPOST, path_strategy=lambda r: f".{r.rkey}.json"), "a temporary's name or a path"),
        (
            _replace(K.REPOST, path_strategy=lambda r: f"{r.author_did}/x.json"),
            "a temporary's name or a path",
        ),
        (_replace(K.REPOST, delete=K.DELETE_LIKE), "not a delete of app.bsky.feed.repost"),
        ({**HANDLERS, K.REPOST: HANDLERS[K.LIKE]}, "holds the config of like under repost"),
        (
            _replace(K.REPOST, dataset=msgspec.structs.replace(HANDLERS[K.REPOST].dataset, columns=())),
            "two different datasets are named study_user_activity/repost",
        ),
    ],
)
def test_a_registry_that_cannot_work_is_refused(registry: Registry, message: str) -> None:
    """check_registry names what is wrong with a registry instead of letting a part fail later."""
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        check_registry(registry)


def test_a_registry_may_leave_handlers_out() -> None:
    """A registry without the in-network handlers (or any pair of them) is a registry."""
    check_registry({k: c for k, c in HANDLERS.items() if not k.startswith("in_network")})
    check_registry({K.POST: HANDLERS[K.POST], K.DELETE_POST: HANDLERS[K.DELETE_POST]})
    check_registry({K.DELETE_POST: HANDLERS[K.DELETE_POST]})
    assert HANDLERS[K.DELETE_POST].select is selectors.author_in_study


@pytest.mark.parametrize("key", list(HandlerKey))
def test_write_then_read_round_trips(tmp_path: Path, key: HandlerKey) -> None:
    """What a handler writes, its read strategy finds and decodes identically."""
    config = HANDLERS[key]
    record = make(key)
    path = write_record(str(tmp_path), config, record)
    assert path == record_path(str(tmp_path), config, record)
    assert path.startswith(str(tmp_path / config.directory) + "/")
    assert list(read_records(str(tmp_path), config)) == [(path, record)]


def test_file_names_follow_the_seed_tree(tmp_path: Path) -> None:
    """File names and nesting are the ones the architecture gives."""
    root = str(tmp_path)

    def where(key: HandlerKey, **overrides: object) -> str:
        return record_path(root, HANDLERS[key], make(key, **overrides))[len(root) + 1 :]

    assert where(K.LIKE, nested_key="3liked") == (
        "study_user_activity/create/like/3liked/author_did=did:plc:a_like_uri_suffix=3k.json"
    )
    assert where(K.FOLLOW_FOLLOWEE) == (
        "study_user_activity/create/follow/followee/"
        "follower_did=did:plc:a_followee_did=did:plc:b_follow_uri_suffix=3k.json"
    )
    assert where(K.DELETE_FOLLOW_FOLLOWER) == (
        "study_user_activity/delete/follow/follower/author_did=did:plc:a_follow_uri_suffix=3k.json"
    )
    assert where(K.REPOST, nested_key="3p") == (
        "study_user_activity/create/repost/3p/author_did=did:plc:a_repost_uri_suffix=3k.json"
    )
    assert where(K.DELETE_REPOST_ON_USER_POST) == (
        "study_user_activity/delete/repost_on_user_post/author_did=did:plc:a_repost_uri_suffix=3k.json"
    )
    assert where(K.QUOTE_OF_USER_POST, nested_key="3q") == (
        "study_user_activity/create/quote_of_user_post/3q/author_did=did:plc:a_post_uri_suffix=3k.json"
    )
    assert where(K.IN_NETWORK_DELETE_POST) == (
        "in_network_user_activity/delete/post/did:plc:a/author_did=did:plc:a_post_uri_suffix=3k.json"
    )
    assert HANDLERS[K.FOLLOW_FOLLOWEE].follow_status == FollowStatus.FOLLOWEE


def test_nested_handler_without_a_nested_key_is_an_error(tmp_path: Path) -> None:
    """A nested handler refuses a record that lost its nested key instead of writing it flat."""
    record = make(HandlerKey.IN_NETWORK_POST, nested_key=None)
    with pytest.raises(ValueError, match="nests by a key"):
        record_path(str(tmp_path), HANDLERS[HandlerKey.IN_NETWORK_POST], record)


def test_record_codec_round_trips_json() -> None:
    """The cache file is plain JSON, decoded back to an equal record."""
    record = make(HandlerKey.POST)
    assert decode_record(encode_record(record)) == record
    assert encode_record(record).startswith(b'{"uri":"at://did:plc:a/app.bsky.feed.post/3k"')


def test_read_strategies_ignore_temporary_files(tmp_path: Path) -> None:
    """Dot-prefixed temporaries are never read as records."""
    config = HANDLERS[HandlerKey.POST]
    directory = tmp_path / config.directory
    directory.mkdir(parents=True)
    (directory / ".author_did=x_post_uri_suffix=y.json.tmp").write_bytes(b"{")
    (directory / ".hidden.json").write_bytes(b"{")
    assert list(read_records(str(tmp_path), config)) == []
    assert list(reading.read_flat(str(directory))) == []
