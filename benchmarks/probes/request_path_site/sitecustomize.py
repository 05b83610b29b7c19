"""Loaded by every process of the server that ``benchmarks/probes/request_path.py`` starts (it
puts this folder on PYTHONPATH): records which of the project's functions run while the probe's
flag file is there, and writes them out when it is told to."""

import json
import os
import sys
import threading
import time

ROOT = os.environ.get("REQUEST_PATH_ROOT")
FOLDER = os.environ.get("REQUEST_PATH_DIR")

if ROOT and FOLDER:
    seen: set[tuple[str, str]] = set()
    recording = threading.Event()

    def _profile(frame, event, arg):  # noqa: ANN001, ANN202 - sys.setprofile's signature
        if event == "call" and recording.is_set():
            path = frame.f_code.co_filename
            if path.startswith(ROOT) and "/.venv/" not in path:
                seen.add((path[len(ROOT) + 1 :], frame.f_code.co_name))

    def _watch() -> None:
        while not os.path.exists(f"{FOLDER}/stop"):
            if os.path.exists(f"{FOLDER}/start"):
                recording.set()
            time.sleep(0.05)
        recording.clear()
        with open(f"{FOLDER}/{os.getpid()}.json", "w") as out:
            json.dump(sorted(seen), out)

    sys.setprofile(_profile)
    threading.setprofile(_profile)
    threading.Thread(target=_watch, daemon=True).start()
