"""What every layer leans on: settings, model packs, worker start-up, environment checks, request
ids in logs and stage timings. Imports no other part of ``face_api``."""
