"""The Milvus user the chart's README, "Deploying", step 3 makes (kubernetes/milvus-user.py),
against a real Milvus server with authorization on: its role suffices for every gallery call the
service makes, and holds nothing more; root's default password stops working.

The server is Milvus 2.3.5 standalone (the `milvus` package, tests/milvus_server.py); Milvus's Helm
chart installs a newer cluster, whose privilege names for these calls are the same.
"""

from __future__ import annotations

import os
import subprocess
import sys

import grpc
import numpy as np
import pytest
from pymilvus import MilvusClient, MilvusException

from face_api.galleries.store import GalleryStore
from tests.kubernetes import KUBERNETES
from tests.milvus_server import running_milvus

SCRIPT = KUBERNETES / "milvus-user.py"
PACK, DIM = "buffalo_sc_int8", 512
NEW_ROOT, USER_PASSWORD = "a-new-root-password", "face-api-password"


def unit_rows(n: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def make_user(uri: str, root_password: str, new_root: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "MILVUS_URI": uri,
        "MILVUS_ROOT_PASSWORD": root_password,
        "MILVUS_NEW_ROOT_PASSWORD": new_root,
        "FACE_API_PASSWORD": USER_PASSWORD,
    }
    return subprocess.run(
        [sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=300
    )


def refused(call, *args) -> bool:
    """Milvus answered "permission deny" (pymilvus raises it as a MilvusException, or as the
    gRPC error itself for some calls against a 2.3 server)."""
    try:
        call(*args)
    except (MilvusException, grpc.RpcError) as exc:
        return "permission deny" in str(exc).lower()
    return False


@pytest.fixture(scope="module")
def milvus(tmp_path_factory):
    with running_milvus(tmp_path_factory.mktemp("milvus-auth"), authorization=True) as server:
        yield server


def test_the_user_script_makes_a_least_privilege_user_and_retires_roots_default(milvus):
    made = make_user(milvus.uri, "Milvus", NEW_ROOT)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token == f"face_api:{USER_PASSWORD}"  # what the Secret holds, and nothing else
    with pytest.raises(MilvusException):
        MilvusClient(uri=milvus.uri, token="root:Milvus").list_collections()
    root = MilvusClient(uri=milvus.uri, token=f"root:{NEW_ROOT}")
    assert "face_api" in root.list_users()
    # Run again (after an upgrade, say): it grants again and leaves the user as it is.
    again = make_user(milvus.uri, NEW_ROOT, "")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == token

    # Every call the service makes, as the API's user.
    store = GalleryStore(milvus.uri, PACK, DIM, token, connect_timeout_s=30)
    faces = unit_rows(3, 1)
    ids = store.enroll("staff", "ada", faces[:2], {"team": "a"})
    store.enroll("staff", "bob", faces[2:])
    assert [g.name for g in store.galleries()] == ["staff"]
    assert store.gallery("staff").faces == 3
    assert store.search("staff", faces[:1], limit=2)[0][0].face_id == ids[0]
    assert store.verify("staff", "ada", faces[0]).face_id == ids[0]
    assert store.subjects("staff", 0, 10) == ([("ada", 2), ("bob", 1)], 2)
    assert store.faces("staff", 0, 10)[1] == 3
    store.delete_face("staff", ids[1])
    assert store.delete_subject("staff", "bob") == 1
    rows = list(store.rows("staff"))
    assert [r["face_id"] for r in rows] == [ids[0]]
    store.begin_import("copy", replace=False)
    store.import_faces("copy", rows)
    store.finish_import("copy", 1)
    assert store.gallery("copy").faces == 1
    assert store.delete_gallery("copy") == 1
    assert store.delete_gallery("staff") == 1
    assert store.galleries() == []

    # ... and nothing more: no users, roles, databases; root's password stays root's.
    user = MilvusClient(uri=milvus.uri, token=token)
    assert refused(user.create_user, "intruder", "intruder-password")
    assert refused(user.create_role, "admin2")
    assert refused(user.grant_role, "face_api", "admin")
    assert refused(user.create_database, "elsewhere")
    assert refused(user.update_password, "root", NEW_ROOT, "stolen-password")
