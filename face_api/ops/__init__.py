"""What every layer leans on: settings and the API's limits, the one error type and the services'
reply envelope, worker start-up, logging, environment checks and stage timings. Imports no other
part of ``face_api``."""
