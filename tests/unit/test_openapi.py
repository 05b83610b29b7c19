"""The published OpenAPI spec: BentoML's, with the contract's errors and auth."""

from __future__ import annotations

from face_api.http.openapi import POST_ERRORS, contract_openapi

DETECT_BODY = {
    "type": "object",
    "title": "DetectReqBodyIODescriptor",
    "required": ["image"],
    "properties": {"image": {"type": "string"}, "seq": {"type": "integer", "default": 0}},
}
DETECT_ANSWER = {
    "type": "object",
    "title": "DetectResponseIODescriptor",
    "properties": {
        "seq": {"type": "integer", "default": 0},
        "faces": {"type": "array", "items": {"$ref": "#/components/schemas/DetectResult"}},
    },
}
DETECT_FORM = {
    "type": "object",
    "title": "Input",
    "required": ["image"],
    "properties": {"image": {"type": "string", "format": "binary"}, "seq": {"type": "integer"}},
}


def answer(schema: dict) -> dict:
    return {"description": "ok", "content": {"application/json": {"schema": schema}}}


BENTOML_SPEC = {
    "openapi": "3.0.2",
    "info": {"title": "FaceAPI", "version": "None"},
    "paths": {
        "/healthz": {"get": {"responses": {200: {"description": "ok"}}}},
        "/v1/detect": {
            "post": {
                "x-bentoml-name": "detect",
                "operationId": "FaceAPI__detect",
                "responses": {
                    200: answer(DETECT_ANSWER),
                    400: {"description": "Bad Request"},
                    404: {"description": "Not Found"},
                    500: {"description": "Internal Server Error"},
                },
                "requestBody": {
                    "content": {"application/json": {"schema": {**DETECT_BODY, "root_input": True}}}
                },
            }
        },
        "/v1/file/detect": {
            "post": {
                "x-bentoml-name": "file_detect",
                "responses": {200: answer(DETECT_ANSWER)},
                "requestBody": {
                    "content": {
                        "multipart/form-data": {
                            "schema": DETECT_FORM,
                            "encoding": {"seq": {"contentType": "application/json"}},
                        }
                    }
                },
            }
        },
        "/v1/health": {"get": {"responses": {"200": {"description": "ok"}}}},
        "/v1/galleries/{gallery}": {
            "delete": {"responses": {"200": {}, "404": {"description": "Unknown gallery"}}}
        },
        "/v1/file/galleries/{gallery}/faces": {
            "post": {
                "responses": {"200": answer({"$ref": "#/components/schemas/EnrollResponse"})},
                "requestBody": {
                    "content": {
                        "multipart/form-data": {
                            "schema": {"$ref": "#/components/schemas/Body_file_enroll"}
                        }
                    }
                },
            }
        },
    },
    "components": {
        "schemas": {
            "InvalidArgument": {},
            "NotFound": {},
            "DetectResult": {
                "type": "object",
                "properties": {"confidence": {"type": "number", "default": 0.0}},
            },
            "DetectReqBodyIODescriptor": {**DETECT_BODY, "root_input": True},
            "DetectResponseIODescriptor": DETECT_ANSWER,
            "file_detect__Input": {
                **DETECT_FORM,
                "title": "file_detect__Input",
                "properties": {"image": {"type": "file", "format": "binary"}},
            },
            "EnrollResponse": {"type": "object", "properties": {"subject": {"type": "string"}}},
            "Body_file_enroll": {
                "type": "object",
                "properties": {
                    "image": {"type": "string", "contentMediaType": "application/octet-stream"}
                },
            },
        }
    },
}


def test_posts_document_the_contracts_errors_and_the_api_key():
    spec = contract_openapi(BENTOML_SPEC, title="face-api", version="1.2.3", description="d")
    post = spec["paths"]["/v1/detect"]["post"]
    assert set(post["responses"]) == {"200", "401", "413", "422", "429", "503"}
    assert post["responses"]["422"] == POST_ERRORS["422"]
    assert post["security"] == [{"ApiKey": []}, {"Bearer": []}]
    assert "root_input" not in post["requestBody"]["content"]["application/json"]["schema"]
    assert spec["components"]["securitySchemes"]["ApiKey"]["in"] == "header"
    schemas = spec["components"]["schemas"]
    assert {"ErrorMessage", "HTTPValidationError", "ValidationError", "DetectResult"} <= set(
        schemas
    )
    assert "InvalidArgument" not in schemas and "NotFound" not in schemas
    assert spec["info"] == {"title": "face-api", "version": "1.2.3", "description": "d"}


def test_public_gets_and_infrastructure_paths_need_no_key_and_get_names():
    spec = contract_openapi(BENTOML_SPEC, title="t", version="v", description="d")
    health = spec["paths"]["/v1/health"]["get"]
    assert health == {**BENTOML_SPEC["paths"]["/v1/health"]["get"], "tags": ["Info"]}
    probe = spec["paths"]["/healthz"]["get"]
    assert "security" not in probe and probe["operationId"] == "healthz"
    assert BENTOML_SPEC["paths"]["/v1/detect"]["post"]["responses"][400]  # input not mutated


def test_fastapi_routes_keep_their_errors_and_need_the_key():
    spec = contract_openapi(BENTOML_SPEC, title="t", version="v", description="d")
    delete = spec["paths"]["/v1/galleries/{gallery}"]["delete"]
    assert delete["responses"]["404"] == {"description": "Unknown gallery"}
    assert {"401", "422", "503"} <= set(delete["responses"]) and "413" not in delete["responses"]
    assert delete["security"] == [{"ApiKey": []}, {"Bearer": []}]


def test_native_apis_refer_to_one_named_component_each_and_require_their_body():
    spec = contract_openapi(BENTOML_SPEC, title="t", version="v", description="d")
    assert spec["openapi"] == "3.1.0"
    post = spec["paths"]["/v1/detect"]["post"]
    assert post["operationId"] == "detect" and post["tags"] == ["Faces"]
    assert post["requestBody"]["required"] is True
    body = post["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/DetectReqBody"}
    returned = post["responses"]["200"]["content"]["application/json"]["schema"]
    assert returned == {"$ref": "#/components/schemas/DetectResponse"}
    schemas = spec["components"]["schemas"]
    assert "root_input" not in schemas["DetectReqBody"]
    assert not [name for name in schemas if "IODescriptor" in name or name.endswith("__Input")]
    form = spec["paths"]["/v1/file/detect"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert form == {"schema": {"$ref": "#/components/schemas/FileDetectForm"}}  # no JSON parts
    assert schemas["FileDetectForm"]["properties"]["image"] == {
        "type": "string",
        "format": "binary",
    }


def test_upload_fields_are_binary_strings_and_forms_are_named_for_their_call():
    spec = contract_openapi(BENTOML_SPEC, title="t", version="v", description="d")
    schemas = spec["components"]["schemas"]
    assert "Body_file_enroll" not in schemas
    assert schemas["FileEnrollForm"]["properties"]["image"] == {
        "type": "string",
        "format": "binary",
    }
    form = spec["paths"]["/v1/file/galleries/{gallery}/faces"]["post"]["requestBody"]
    assert form["content"]["multipart/form-data"]["schema"]["$ref"].endswith("/FileEnrollForm")


def test_every_key_of_an_answer_is_required_but_request_bodies_keep_their_defaults():
    spec = contract_openapi(BENTOML_SPEC, title="t", version="v", description="d")
    schemas = spec["components"]["schemas"]
    assert schemas["DetectResponse"]["required"] == ["seq", "faces"]
    assert schemas["DetectResult"]["required"] == ["confidence"]  # reached through the answer
    assert schemas["EnrollResponse"]["required"] == ["subject"]
    assert schemas["DetectReqBody"]["required"] == ["image"]  # seq keeps its default


def test_validation_errors_are_loc_msg_and_type_only():
    # The refused input is never echoed (a NaN there made FastAPI's 422 unencodable: a 500).
    spec = contract_openapi(BENTOML_SPEC, title="t", version="v", description="d")
    properties = spec["components"]["schemas"]["ValidationError"]["properties"]
    assert {"loc", "msg", "type"} == set(properties)
