"""The gallery store on a real embedded Milvus Lite in a temporary folder (no stubs)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from face_api.galleries.store import GalleryStore
from face_api.ops.errors import ApiError
from face_api.ops.limits import METADATA_MAX_DEPTH

DIM = 512
PACK = "buffalo_sc_int8"


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> GalleryStore:
    db = tmp_path_factory.mktemp("galleries") / "galleries.db"
    return GalleryStore(str(db), PACK, DIM)


@pytest.fixture(scope="module")
def people() -> np.ndarray:
    return unit(np.random.default_rng(1).standard_normal((20, DIM)).astype(np.float32))


def test_enrolled_faces_are_found_at_once_rank_1_best_first(store, people):
    for i, person in enumerate(people):
        ids = store.enroll("staff", f"person-{i}", person[np.newaxis], {"desk": i})
        assert len(ids) == 1 and len(ids[0]) == 32
    rng = np.random.default_rng(2)
    probes = unit(people + 0.01 * rng.standard_normal(people.shape).astype(np.float32))
    results = store.search("staff", probes, limit=3)
    for i, matches in enumerate(results):
        assert [m.subject for m in matches][0] == f"person-{i}"
        assert matches[0].metadata == {"desk": i}
        scores = [m.score for m in matches]
        assert scores == sorted(scores, reverse=True) and scores[0] > 0.9 > scores[1]
    strict = store.search("staff", probes[:1], limit=3, threshold=0.5)[0]
    assert [m.subject for m in strict] == ["person-0"]


def test_verify_pages_and_deletes(store, people):
    store.enroll("desk", 'O"Brien \'the second\' OR subject != ""', people[:2])
    store.enroll("desk", "ada", people[2:5], {"team": "x"})
    match = store.verify("desk", 'O"Brien \'the second\' OR subject != ""', people[1])
    assert match.score > 0.999 and match.subject == 'O"Brien \'the second\' OR subject != ""'
    assert store.verify("desk", "ada", people[1]).score < 0.3  # ada's best, still not person 1
    page, total = store.subjects("desk", offset=0, limit=1)
    assert total == 2 and page == [('O"Brien \'the second\' OR subject != ""', 2)]
    assert store.subjects("desk", offset=1, limit=5)[0] == [("ada", 3)]
    faces, total = store.faces("desk", offset=0, limit=10, subject="ada")
    assert total == 3 and {f.metadata["team"] for f in faces} == {"x"}
    store.delete_face("desk", faces[0].face_id)
    assert store.faces("desk", 0, 10)[1] == 4
    assert store.delete_subject("desk", 'O"Brien \'the second\' OR subject != ""') == 2
    assert store.gallery("desk").faces == 2
    store.delete_gallery("desk")
    assert "desk" not in [g.name for g in store.galleries()]


def test_unknown_names_are_404(store, people):
    store.enroll("known", "someone", people[:1])
    for call in (
        lambda: store.search("nope", people[:1], limit=1),
        lambda: store.verify("known", "nobody", people[0]),
        lambda: store.faces("known", 0, 10, subject="nobody"),
        lambda: store.delete_face("known", "0" * 32),
        lambda: store.delete_subject("known", "nobody"),
        lambda: store.delete_gallery("nope"),
        lambda: store.subjects("nope", 0, 10),
    ):
        with pytest.raises(ApiError) as missing:
            call()
        assert missing.value.status == 404


def test_bad_input_is_refused(store, people):
    with pytest.raises(ApiError, match="512-d"):
        store.enroll("known", "x", np.ones((1, 128), np.float32))
    with pytest.raises(ApiError, match="non-zero"):
        store.search("known", np.zeros((1, DIM), np.float32), limit=1)
    with pytest.raises(ApiError, match="gallery names"):
        store.enroll("no spaces or /", "x", people[:1])
    with pytest.raises(ApiError, match="subject"):
        store.enroll("known", "", people[:1])


@pytest.mark.parametrize("name", ["..", ".", "...", ".hidden", "_x", "-x", "a" * 65, "", "a/b"])
def test_gallery_names_start_with_a_letter_or_digit(store, people, name):
    with pytest.raises(ApiError, match="starting with a letter or a digit") as refused:
        store.enroll(name, "x", people[:1])
    assert refused.value.field == "gallery"


def test_names_that_fit_the_rule_are_kept(store, people):
    for name in ("a", "9", "a.b-c_d", "Z" + "." * 63):
        store.enroll(name, "x", people[:1])
        assert store.gallery(name).faces == 1


def test_metadata_is_capped_by_its_serialized_size(tmp_path, people):
    capped = GalleryStore(str(tmp_path / "galleries.db"), PACK, DIM, metadata_max_bytes=100)
    capped.enroll("m", "x", people[:1], {"note": "a" * 80})  # 91 bytes as compact JSON
    with pytest.raises(ApiError, match="over the limit of 100") as refused:
        capped.enroll("m", "x", people[:1], {"note": "a" * 90})
    assert refused.value.field == "metadata"
    # Counted in UTF-8 bytes, not characters: 30 three-byte characters are 90 bytes.
    with pytest.raises(ApiError, match="metadata is 101 bytes"):
        capped.enroll("m", "x", people[:1], {"note": "\u4eba" * 30})
    assert capped.gallery("m").faces == 1  # nothing of a refused call was stored
    capped.client.close()


def test_default_metadata_cap_is_16_kib(store, people):
    store.enroll("meta", "x", people[:1], {"n": "a" * (16 * 1024 - 8)})  # exactly 16 KiB
    with pytest.raises(ApiError, match="16384"):
        store.enroll("meta", "x", people[:1], {"n": "a" * (5 * 1024 * 1024)})


class _FlakyClient:
    """A MilvusClient whose server comes up after ``failures`` tries."""

    attempts = 0
    failures = 0
    code: object = None

    def __init__(self, uri: str, token: str) -> None:
        from pymilvus import MilvusException

        type(self).attempts += 1
        if type(self).attempts <= type(self).failures:
            raise MilvusException(code=type(self).code, message="server unavailable")

    def list_collections(self) -> list[str]:
        return []


@pytest.fixture
def flaky_milvus(monkeypatch):
    import pymilvus

    monkeypatch.setattr(pymilvus, "MilvusClient", _FlakyClient)
    _FlakyClient.attempts, _FlakyClient.failures, _FlakyClient.code = 0, 0, None
    return _FlakyClient


def test_connecting_waits_for_a_server_that_is_not_listening_yet(flaky_milvus):
    import grpc
    from pymilvus.client.types import Status

    from face_api.galleries.store import _connect

    for code in (Status.CONNECT_FAILED, grpc.StatusCode.UNAVAILABLE):
        flaky_milvus.attempts, flaky_milvus.failures, flaky_milvus.code = 0, 3, code
        assert isinstance(_connect("x.db", None, timeout_s=30), _FlakyClient)
        assert flaky_milvus.attempts == 4


def test_connecting_gives_up_at_the_deadline_and_on_other_errors(flaky_milvus):
    import time

    from pymilvus import MilvusException
    from pymilvus.client.types import Status

    from face_api.galleries.store import _connect

    flaky_milvus.failures, flaky_milvus.code = 10**6, Status.CONNECT_FAILED
    started = time.monotonic()
    with pytest.raises(MilvusException):
        _connect("x.db", None, timeout_s=1)
    assert 1 <= time.monotonic() - started < 3
    flaky_milvus.attempts, flaky_milvus.code = 0, Status.ILLEGAL_ARGUMENT
    with pytest.raises(MilvusException):
        _connect("x.db", None, timeout_s=30)
    assert flaky_milvus.attempts == 1  # not a connection failure: no retry


def test_connecting_waits_for_an_engine_that_is_still_starting(flaky_milvus):
    from pymilvus import MilvusException

    from face_api.galleries.store import _connect

    calls = []

    def prepare(client: object) -> None:
        calls.append(client)
        if len(calls) <= 2:
            message = 'Assert "init_flag_ == true"  => Mmap manager has not been init. at ...'
            raise MilvusException(code=2000, message=message)

    assert isinstance(_connect("x.db", None, timeout_s=30, prepare=prepare), _FlakyClient)
    assert len(calls) == 3

    def broken(client: object) -> None:
        calls.append(client)
        raise MilvusException(code=2000, message="Assert failed: something else")

    calls.clear()
    with pytest.raises(MilvusException, match="something else"):
        _connect("x.db", None, timeout_s=30, prepare=broken)
    assert len(calls) == 1  # not a start-up error: no retry


def test_galleries_survive_a_reopen_and_refuse_another_pack(tmp_path, people):
    db = str(tmp_path / "galleries.db")
    first = GalleryStore(db, PACK, DIM)
    ids = first.enroll("kept", "ada", people[:3])
    first.client.close()

    again = GalleryStore(db, PACK, DIM)
    assert [(g.name, g.pack, g.faces) for g in again.galleries()] == [("kept", PACK, 3)]
    assert again.search("kept", people[:1], limit=1)[0][0].face_id == ids[0]
    again.client.close()

    other = GalleryStore(db, "antelopev2", DIM)
    with pytest.raises(ApiError, match="never mixed"):
        other.search("kept", people[:1], limit=1)
    with pytest.raises(ApiError):
        other.enroll("kept", "bob", people[3:4])
    other.client.close()


INJECTIONS = [
    "x'] or face_id not in ['",
    'x"] or face_id not in ["',
    "0" * 32 + "' or '1'=='1",
]


@pytest.mark.parametrize("face_id", INJECTIONS)
def test_a_face_id_of_another_shape_is_refused_before_any_query(store, people, face_id):
    ids = store.enroll("guarded", "someone", people[:3])
    with pytest.raises(ApiError) as refused:
        store.delete_face("guarded", face_id)
    assert refused.value.status == 422 and refused.value.field == "face_id"
    assert store.gallery("guarded").faces == 3
    assert store.faces("guarded", 0, 10)[1] == 3 and len(ids) == 3
    store.delete_gallery("guarded")


@pytest.mark.parametrize(
    "subject",
    ['a" or subject != "', "a' or subject != '", "{s}", "José 😀", "a b", "..."],
)
def test_a_subject_is_only_ever_itself_in_a_filter(store, people, subject):
    store.enroll("quoted", "bystander", people[:2])
    store.enroll("quoted", subject, people[2:3])
    assert store.verify("quoted", subject, people[2]).score > 0.999
    assert store.faces("quoted", 0, 10, subject)[1] == 1
    assert store.delete_subject("quoted", subject) == 1
    assert store.faces("quoted", 0, 10)[1] == 2  # the bystander's faces are all still there
    store.delete_gallery("quoted")


@pytest.mark.parametrize(
    ("metadata", "reason"),
    [
        ({"a": float("nan")}, "finite"),
        ({"a": [float("inf")]}, "finite"),
        ({"a": 2**64}, "64 bits"),
        ({"a": "\ud800"}, "Unicode"),
        ({"\udfff": 1}, "Unicode"),
        ({"a": [1, 2.5, True, None, "ok"]}, None),
    ],
)
def test_metadata_is_plain_json(store, people, metadata, reason):
    if reason is None:
        assert store.enroll("plain", "x", people[:1], metadata)
        return
    with pytest.raises(ApiError, match=reason) as refused:
        store.enroll("plain", "x", people[:1], metadata)
    assert refused.value.field == "metadata"


def test_metadata_nested_deeper_than_the_limit_is_refused(store, people):
    deep: dict = {}
    inner = deep
    for _ in range(METADATA_MAX_DEPTH - 1):
        inner["a"] = {}
        inner = inner["a"]
    assert store.enroll("nested", "x", people[:1], deep)  # exactly the limit
    inner["a"] = {}
    with pytest.raises(ApiError, match="levels deep"):
        store.enroll("nested", "x", people[:1], deep)


def test_a_gallery_made_before_subject_keys_is_served_and_erased(tmp_path, people):
    """Galleries enrolled by an earlier version have no subject_key column: their subjects are
    found by reading the subject column, erasure included (any name it held)."""
    from pymilvus import DataType

    store = GalleryStore(str(tmp_path / "galleries.db"), PACK, DIM)
    client, collection = store.client, "gallery_" + b"old".hex()
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("face_id", DataType.VARCHAR, is_primary=True, max_length=64)
    schema.add_field("subject", DataType.VARCHAR, max_length=1024)
    schema.add_field("metadata", DataType.JSON)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=DIM)
    index = client.prepare_index_params()
    index.add_index("vector", metric_type="COSINE", index_type="FLAT")
    client.create_collection(collection, schema=schema, index_params=index)
    names = ["eve\nx", "a/b", "plain", "plain"]  # what earlier versions let through
    client.insert(
        collection,
        [
            {"face_id": f"{i:032x}", "subject": n, "metadata": {}, "vector": people[i].tolist()}
            for i, n in enumerate(names)
        ],
    )
    # the registry earlier versions kept each gallery's pack in
    registry = client.create_schema(auto_id=False, enable_dynamic_field=False)
    registry.add_field("name", DataType.VARCHAR, is_primary=True, max_length=64)
    registry.add_field("pack", DataType.VARCHAR, max_length=256)
    registry.add_field("dimension", DataType.INT64)
    registry.add_field("unused", DataType.FLOAT_VECTOR, dim=2)
    index = client.prepare_index_params()
    index.add_index("unused", metric_type="L2", index_type="FLAT")
    client.create_collection("face_api_galleries", schema=registry, index_params=index)
    client.upsert(
        "face_api_galleries", [{"name": "old", "pack": PACK, "dimension": DIM, "unused": [0, 0]}]
    )
    assert [(g.name, g.pack, g.faces) for g in store.galleries()] == [("old", PACK, 4)]
    assert store.verify("old", "a/b", people[1]).face_id == f"{1:032x}"
    assert store.faces("old", 0, 10, "plain")[1] == 2
    assert store.delete_subject("old", "eve\nx") == 1
    assert store.delete_subject("old", "plain") == 2
    assert [f.subject for f in store.faces("old", 0, 10)[0]] == ["a/b"]
    with pytest.raises(ApiError) as missing:
        store.verify("old", "plain", people[2])
    assert missing.value.status == 404
    assert store.enroll("old", "new", people[5:6])  # into the old layout, found by its subject
    assert store.faces("old", 0, 10, "new")[1] == 1
    assert store.delete_gallery("old") == 2
    assert client.query("face_api_galleries", filter='name != ""', output_fields=["name"]) == []


def test_two_stores_on_one_database_remember_nothing_of_each_others_galleries(tmp_path, people):
    """Each is another replica's client: a gallery dropped through one is a 404 to the other's
    reads and a fresh gallery to its enroll, never a 5xx; one made again for another pack is
    refused."""
    db = str(tmp_path / "galleries.db")
    a, b = GalleryStore(db, PACK, DIM), GalleryStore(db, PACK, DIM)
    [kept] = a.enroll("shared", "ada", people[:1])
    assert b.search("shared", people[:1], limit=1)[0][0].face_id == kept
    assert a.delete_gallery("shared") == 1
    for read in (
        lambda: b.search("shared", people[:1], limit=1),
        lambda: b.verify("shared", "ada", people[0]),
        lambda: b.faces("shared", 0, 10),
        lambda: b.subjects("shared", 0, 10),
        lambda: b.delete_face("shared", kept),
        lambda: b.delete_gallery("shared"),
    ):
        with pytest.raises(ApiError) as missing:
            read()
        assert missing.value.status == 404
    [fresh] = b.enroll("shared", "bob", people[1:2])
    assert [m.face_id for m in a.search("shared", people[1:2], limit=5)[0]] == [fresh]
    b.delete_gallery("shared")
    other = GalleryStore(db, "another_pack", DIM)
    other.enroll("shared", "eve", people[2:3])
    for call in (
        lambda: a.search("shared", people[:1], limit=1),
        lambda: b.enroll("shared", "x", people[:1]),
    ):
        with pytest.raises(ApiError, match="another_pack") as refused:
            call()
        assert refused.value.status == 422
    assert a.delete_gallery("shared") == 1  # erasure takes any pack's gallery


def test_enrolls_and_drops_of_one_name_at_once_from_two_stores_leave_one_whole_gallery(
    tmp_path, people
):
    import threading

    db = str(tmp_path / "galleries.db")
    stores = [GalleryStore(db, PACK, DIM) for _ in range(2)]
    start = threading.Barrier(4)
    errors: list[BaseException] = []
    enrolled: list[str] = []

    def enroll(store: GalleryStore, rows: np.ndarray) -> None:
        start.wait()
        try:
            for row in rows:
                enrolled.extend(store.enroll("race", "x", row[np.newaxis]))
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion below
            errors.append(exc)

    def drop(store: GalleryStore) -> None:
        start.wait()
        try:
            store.delete_gallery("race")
        except ApiError as error:
            if error.status != 404:
                errors.append(error)

    threads = [
        threading.Thread(target=enroll, args=(stores[0], people[:5])),
        threading.Thread(target=enroll, args=(stores[1], people[5:10])),
        threading.Thread(target=drop, args=(stores[0],)),
        threading.Thread(target=drop, args=(stores[1],)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    # Whatever the order, no call failed; then one face more through each store: the gallery
    # is whole, what it lists is what it counts, all of it enrolled faces, these two among them.
    last = [
        *stores[0].enroll("race", "y", people[10:11]),
        *stores[1].enroll("race", "y", people[11:12]),
    ]
    listed = {f.face_id for f in stores[1].faces("race", 0, 100)[0]}
    assert set(last) <= listed <= {*enrolled, *last}
    assert stores[0].gallery("race").faces == len(listed)


def test_erasure_by_a_visible_name_reaches_every_face_of_that_look_in_an_earlier_gallery(
    tmp_path, people
):
    """A gallery of the version before looks were kept (subject_key, no subject_look) holds what
    it let in: an invisible twin, an NFD name, a trailing space, a Cyrillic look-alike. Erasure by
    the name a person sees reaches them all, and nothing else."""
    from pymilvus import DataType

    from face_api.galleries.store import SUBJECT_KEY

    store = GalleryStore(str(tmp_path / "galleries.db"), PACK, DIM)
    client, collection = store.client, "gallery_" + b"before".hex()
    schema = client.create_schema(
        auto_id=False, enable_dynamic_field=False, description=json.dumps({"pack": PACK})
    )
    schema.add_field("face_id", DataType.VARCHAR, is_primary=True, max_length=64)
    schema.add_field("subject", DataType.VARCHAR, max_length=1024)
    schema.add_field(SUBJECT_KEY, DataType.VARCHAR, max_length=2048)
    schema.add_field("metadata", DataType.JSON)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=DIM)
    index = client.prepare_index_params()
    index.add_index("vector", metric_type="COSINE", index_type="FLAT")
    client.create_collection(collection, schema=schema, index_params=index)
    names = ["Alice", "Alice\u200b", "Alice ", "\u0410lice", "Jose\u0301", "Alicia", "alice"]
    client.insert(
        collection,
        [
            {
                "face_id": f"{i:032x}",
                "subject": n,
                SUBJECT_KEY: n.encode().hex(),
                "metadata": {},
                "vector": people[i].tolist(),
            }
            for i, n in enumerate(names)
        ],
    )
    assert store.delete_subject("before", "Alice") == 4
    assert store.delete_subject("before", "Jos\u00e9") == 1  # its NFC name
    assert sorted(f.subject for f in store.faces("before", 0, 10)[0]) == ["Alicia", "alice"]
    assert store.enroll("before", "Bob", people[10:11])  # the old layout still takes faces
    assert store.delete_subject("before", "Bob") == 1


def test_a_gallery_keeps_one_name_per_look(store, people):
    store.enroll("looks", "Alice", people[:1])
    store.enroll("looks", "Alice", people[1:2])  # the same name: more of its faces
    for twin in ("\u0410lice", "A\u217cice", "A1ice"):
        with pytest.raises(ApiError) as refused:
            store.enroll("looks", twin, people[2:3])
        assert refused.value.status == 409 and "'Alice'" in refused.value.message, twin
    for invisible in ("Alice\u200b", "Alice ", "A\u202elice", "Alice\u2028"):
        with pytest.raises(ApiError) as refused:
            store.enroll("looks", invisible, people[2:3])
        assert refused.value.status == 422, invisible
    store.enroll("looks", "Jose\u0301", people[3:4])  # kept in NFC
    assert [s for s, _ in store.subjects("looks", 0, 10)[0]] == ["Alice", "Jos\u00e9"]
    assert store.delete_subject("looks", "\u0410lice") == 2  # what a person reads as Alice
    assert store.delete_gallery("looks") == 1


class _Counting:
    """A MilvusClient that counts the calls made through it, by name."""

    def __init__(self, client: object) -> None:
        self._client = client
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> object:
        method = getattr(self._client, name)
        if not callable(method):
            return method

        def counted(*args: object, **kwargs: object) -> object:
            self.calls.append(name)
            return method(*args, **kwargs)

        return counted


def test_a_search_of_a_gallery_read_before_is_one_round_trip(tmp_path, people):
    """What a search needs of its gallery (pack, layout, index) is kept: the next searches and
    verifies make one call each, until a collection is made or dropped through the process."""
    store = GalleryStore(str(tmp_path / "galleries.db"), PACK, DIM)
    store.enroll("door", "ada", people[:2])
    store.search("door", people[:1], limit=1)  # reads the gallery once
    store.client = counting = _Counting(store.client)
    for _ in range(3):
        assert store.search("door", people[:1], limit=1)[0][0].subject == "ada"
    assert store.verify("door", "ada", people[1]).score > 0.999
    assert counting.calls == ["search"] * 4
    other = GalleryStore(str(tmp_path / "galleries.db"), PACK, DIM)  # another store, same file
    other.delete_gallery("door")
    counting.calls.clear()
    with pytest.raises(ApiError) as missing:
        store.search("door", people[:1], limit=1)
    assert missing.value.status == 404 and "search" not in counting.calls  # read again first


def test_hnsw_searches_at_least_as_many_candidates_as_it_answers(tmp_path):
    from face_api.ops.settings import GalleryIndex

    store = GalleryStore(str(tmp_path / "galleries.db"), PACK, DIM)
    store.index = GalleryIndex.of("HNSW", search={"ef": 64})  # as on a server
    assert store._search_params("HNSW", 5) == {"ef": 64}
    assert store._search_params("HNSW", 1000) == {"ef": 1000}
    # A gallery made with another index than new ones get: that index's own defaults.
    assert store._search_params("IVF_FLAT", 5) == {"nprobe": 32}
    assert store._search_params("FLAT", 5) == {}
    assert store._search_params("DISKANN", 5) == {}  # made by hand: Milvus's defaults


def test_a_lite_gallery_past_the_size_lite_is_fit_for_is_said_once(
    tmp_path, people, monkeypatch, caplog
):
    import logging

    import face_api.galleries.store as store_module

    monkeypatch.setattr(store_module, "LITE_FIT_FACES", 4)
    monkeypatch.setattr(store_module, "_LITE_RECOUNT", 2)
    store = GalleryStore(str(tmp_path / "galleries.db"), PACK, DIM)
    with caplog.at_level(logging.WARNING, logger="face_api.galleries"):
        for row in people[:8]:
            store.enroll("growing", "x", row[np.newaxis])
    said = [r.getMessage() for r in caplog.records if "fit for" in r.getMessage()]
    assert len(said) == 1 and "'growing' holds 5 faces, past the 4" in said[0], said
    caplog.clear()
    reopened = GalleryStore(str(tmp_path / "galleries.db"), PACK, DIM)
    with caplog.at_level(logging.WARNING, logger="face_api.galleries"):
        reopened.survey()  # at start
    assert any("'growing' holds 8 faces" in r.getMessage() for r in caplog.records)
