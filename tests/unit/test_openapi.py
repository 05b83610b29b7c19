"""The published OpenAPI spec: BentoML's, with the contract's errors and auth."""

from __future__ import annotations

from face_api.http.openapi import POST_ERRORS, contract_openapi

BENTOML_SPEC = {
    "openapi": "3.0.2",
    "info": {"title": "FaceAPI", "version": "None"},
    "paths": {
        "/healthz": {"get": {"responses": {200: {"description": "ok"}}}},
        "/v1/detect": {
            "post": {
                "x-bentoml-name": "detect",
                "responses": {
                    200: {"description": "Successful Response"},
                    400: {"description": "Bad Request"},
                    404: {"description": "Not Found"},
                    500: {"description": "Internal Server Error"},
                },
                "requestBody": {"content": {"application/json": {"schema": {"root_input": True}}}},
            }
        },
        "/v1/health": {"get": {"responses": {"200": {"description": "ok"}}}},
        "/v1/galleries/{gallery}": {
            "delete": {"responses": {"200": {}, "404": {"description": "Unknown gallery"}}}
        },
    },
    "components": {"schemas": {"InvalidArgument": {}, "NotFound": {}, "DetectResult": {}}},
}


def test_posts_document_the_contracts_errors_and_the_api_key():
    spec = contract_openapi(BENTOML_SPEC, title="face-api", version="1.2.3", description="d")
    post = spec["paths"]["/v1/detect"]["post"]
    assert set(post["responses"]) == {"200", "401", "413", "422", "429", "503"}
    assert post["responses"]["422"] == POST_ERRORS["422"]
    assert post["security"] == [{"ApiKey": []}]
    assert "root_input" not in post["requestBody"]["content"]["application/json"]["schema"]
    assert spec["components"]["securitySchemes"]["ApiKey"]["in"] == "header"
    schemas = spec["components"]["schemas"]
    assert {"ErrorMessage", "HTTPValidationError", "ValidationError", "DetectResult"} <= set(
        schemas
    )
    assert "InvalidArgument" not in schemas and "NotFound" not in schemas
    assert spec["info"] == {"title": "face-api", "version": "1.2.3", "description": "d"}


def test_gets_and_infrastructure_paths_are_left_alone():
    spec = contract_openapi(BENTOML_SPEC, title="t", version="v", description="d")
    assert spec["paths"]["/v1/health"] == BENTOML_SPEC["paths"]["/v1/health"]
    assert "security" not in spec["paths"]["/healthz"]["get"]
    assert BENTOML_SPEC["paths"]["/v1/detect"]["post"]["responses"][400]  # input not mutated


def test_fastapi_routes_keep_their_errors_and_need_the_key():
    spec = contract_openapi(BENTOML_SPEC, title="t", version="v", description="d")
    delete = spec["paths"]["/v1/galleries/{gallery}"]["delete"]
    assert delete["responses"]["404"] == {"description": "Unknown gallery"}
    assert {"401", "422", "503"} <= set(delete["responses"]) and "413" not in delete["responses"]
    assert delete["security"] == [{"ApiKey": []}]
