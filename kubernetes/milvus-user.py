"""The API's Milvus user, with a role that holds only what the service does, and a new password
for Milvus's `root` (kubernetes/face-api/README.md, "Deploying", step 3).

    kubectl -n faces port-forward service/face-galleries-milvus 19530:19530 &
    MILVUS_URI=http://127.0.0.1:19530 .venv/bin/python kubernetes/milvus-user.py

It asks for root's password (`Milvus` on a new cluster), root's new one (empty: keep it) and the
API user's (or reads MILVUS_ROOT_PASSWORD, MILVUS_NEW_ROOT_PASSWORD, FACE_API_PASSWORD), then
prints the token for the API's Secret to stdout and nothing else. Any Python with pymilvus runs
it. Run again, it grants the role again and leaves an existing user's password alone.

What the service calls (face_api/galleries/store.py, through pymilvus's MilvusClient) and the
privilege each needs, in the default database, on every collection (`*`: each gallery is its own
collection, made on its first enroll):
  list_collections                             ShowCollections      (Global)
  has_collection, describe_collection          DescribeCollection   (Global)
  create_collection (its index, then loaded)   CreateCollection     (Global), CreateIndex, Load,
                                               GetLoadingProgress, GetLoadState
  drop_collection                              DropCollection       (Global)
  load_collection                              Load, GetLoadingProgress, GetLoadState
  insert, upsert, delete                       Insert, Upsert, Delete
  query, get, query_iterator, count(*)         Query
  search                                       Search
  describe_index (a gallery's index)           IndexDetail
  list_partitions, create_partition (the       ShowPartitions, CreatePartition
  partition a search names: store.py)
  describe_replica (in-memory replicas)        none
Nothing else: no user, role, database or resource-group administration.
"""

from __future__ import annotations

import getpass
import os
import sys

ROLE = "face_api"
# Milvus allows letters, digits and underscores in a user name: `face-api` is refused.
USER = "face_api"
GLOBAL_PRIVILEGES = ("ShowCollections", "DescribeCollection", "CreateCollection", "DropCollection")
COLLECTION_PRIVILEGES = (
    "CreateIndex",
    "Load",
    "GetLoadingProgress",
    "GetLoadState",
    "Insert",
    "Upsert",
    "Delete",
    "Query",
    "Search",
    "IndexDetail",
    "ShowPartitions",
    "CreatePartition",
)


def secret(variable: str, prompt: str) -> str:
    if variable in os.environ:
        return os.environ[variable]
    return getpass.getpass(prompt)


def grant(uri: str, root_password: str, user_password: str) -> None:
    """The role with exactly the privileges above, and the user in it."""
    from pymilvus import MilvusClient

    client = MilvusClient(uri=uri, token=f"root:{root_password}")
    try:
        if ROLE not in client.list_roles():
            client.create_role(ROLE)
        for privilege in GLOBAL_PRIVILEGES:
            client.grant_privilege(ROLE, "Global", privilege, "*", db_name="default")
        for privilege in COLLECTION_PRIVILEGES:
            client.grant_privilege(ROLE, "Collection", privilege, "*", db_name="default")
        if USER not in client.list_users():
            client.create_user(USER, user_password)
        client.grant_role(USER, ROLE)
    finally:
        client.close()


def change_root_password(uri: str, old: str, new: str) -> None:
    from pymilvus import MilvusClient

    client = MilvusClient(uri=uri, token=f"root:{old}")
    try:
        client.update_password("root", old, new)
    finally:
        client.close()


def main() -> int:
    uri = os.environ.get("MILVUS_URI", "http://127.0.0.1:19530")
    root = secret("MILVUS_ROOT_PASSWORD", "root's password now (Milvus on a new cluster): ")
    new_root = secret("MILVUS_NEW_ROOT_PASSWORD", "root's new password (empty: keep it): ")
    user = secret("FACE_API_PASSWORD", f"{USER}'s password: ")
    # Milvus's own rule: 6 to 256 characters.
    for name, password in (("root's new", new_root), (f"{USER}'s", user)):
        if password and not 6 <= len(password) <= 256:
            print(f"{name} password must be 6 to 256 characters", file=sys.stderr)
            return 2
    if not user:
        print(f"{USER}'s password is needed", file=sys.stderr)
        return 2
    grant(uri, root, user)
    if new_root:
        change_root_password(uri, root, new_root)
    print(f"{USER}:{user}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
