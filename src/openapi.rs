//! The OpenAPI 3.1 document of `/api` and its docs page (vendored RapiDoc, no CDN).

use actix_web::HttpResponse;
use serde_json::{Value, json};

fn op(
    summary: &str,
    params: &[Value],
    body: Option<Value>,
    responses: &[(&str, &str, Option<Value>)],
) -> Value {
    let mut o = json!({ "summary": summary, "parameters": params, "responses": {} });
    if let Some(b) = body {
        o["requestBody"] = b;
    }
    for (code, desc, schema) in responses {
        let mut r = json!({ "description": desc });
        if let Some(s) = schema {
            r["content"] = json!({ "application/json": { "schema": s } });
        }
        o["responses"][*code] = r;
    }
    o
}

fn path_param(name: &str, format: Option<&str>) -> Value {
    let mut schema = json!({ "type": "string" });
    if let Some(f) = format {
        schema["format"] = json!(f);
    }
    json!({ "name": name, "in": "path", "required": true, "schema": schema })
}

fn query(name: &str, ty: &str) -> Value {
    json!({ "name": name, "in": "query", "required": false, "schema": { "type": ty } })
}

fn json_body(schema: Value) -> Value {
    json!({ "required": true, "content": { "application/json": { "schema": schema } } })
}

fn r(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

pub fn build() -> Value {
    let job_id = path_param("job_id", Some("uuid"));
    let err = Some(r("Error"));
    let e404 = ("404", "no such job", err.clone());
    let e409 = ("409", "not allowed in the job's phase", err.clone());
    let e422 = ("422", "invalid input; `field` names it", err.clone());
    let parent = query("parent_dir_path", "string");
    let multipart = json!({ "required": true, "content": { "multipart/form-data": { "schema": {
        "type": "object", "properties": { "file": { "type": "string", "format": "binary" } } } } } });
    json!({
        "openapi": "3.1.0",
        "info": { "title": "mljm", "version": env!("CARGO_PKG_VERSION"),
                  "description": "Machine-learning jobs over archives of astronomical spectra. State-changing requests from other sites are refused (403)." },
        "paths": {
            "/api/jobs/": {
                "post": op("Create a job (PENDING)", &[], Some(json_body(r("NewJob"))), &[("201", "created", Some(r("Job"))), e422.clone()]),
                "get": op("List jobs, newest first", &[query("offset", "integer"), query("limit", "integer"), query("phase", "string"), query("type", "string")], None,
                          &[("200", "a page of jobs", Some(r("JobPage"))), e422.clone()]),
            },
            "/api/jobs/submit": {
                "post": op("Create and run a SCRIPT job from a config part and an entrypoint file", &[],
                    Some(json!({ "required": true, "content": { "multipart/form-data": { "schema": { "type": "object",
                        "properties": { "config": { "type": "string", "description": "JSON: label, description, command, env, timeout_s" },
                                        "entrypoint": { "type": "string", "format": "binary" } } } } } })),
                    &[("202", "queued", Some(r("Job"))), e422.clone()]),
            },
            "/api/jobs/{job_id}": {
                "get": op("Read a job", &[job_id.clone()], None, &[("200", "the job", Some(r("Job"))), e404.clone(), e422.clone()]),
                "patch": op("Edit label or description", &[job_id.clone()], Some(json_body(r("JobEdit"))), &[("200", "the job", Some(r("Job"))), e404.clone(), e422.clone()]),
                "delete": op("Delete a job and its directory", &[job_id.clone()], None, &[("204", "deleted", None), e404.clone(), e409.clone()]),
            },
            "/api/jobs/{job_id}/process/{action}": {
                "post": op("RUN (PENDING → QUEUED) or ABORT (QUEUED/PROCESSING → ABORTED)",
                    &[job_id.clone(), json!({ "name": "action", "in": "path", "required": true, "schema": { "type": "string", "enum": ["RUN", "ABORT"] } })],
                    None, &[("202", "accepted", Some(r("Job"))), e404.clone(), e409.clone(), e422.clone()]),
            },
            "/api/jobs/{job_id}/end/{phase}": {
                "post": op("An external runner ends a PROCESSING job",
                    &[job_id.clone(), json!({ "name": "phase", "in": "path", "required": true, "schema": { "type": "string", "enum": ["COMPLETE", "ERROR"] } })],
                    Some(json_body(r("EndTimes"))), &[("200", "ended", Some(r("Job"))), e404.clone(), e409.clone(), e422.clone()]),
            },
            "/api/jobs/{job_id}/log": {
                "get": {
                    "summary": "The job log from byte `offset`; header X-Next-Offset gives the offset to poll next",
                    "parameters": [job_id.clone(), query("offset", "integer")],
                    "responses": { "200": { "description": "log text", "content": { "text/plain": { "schema": { "type": "string" } } } }, "404": { "description": "no such job" } }
                },
            },
            "/api/files/": {
                "get": op("List a directory", &[parent.clone()], None, &[("200", "the listing", Some(r("Listing"))), ("404", "no such directory", err.clone()), e422.clone()]),
            },
            "/api/files/{filename}/upload": {
                "post": op("Upload a file (streamed; files.upload_limit)", &[path_param("filename", None), parent.clone()], Some(multipart),
                    &[("201", "stored", None), ("413", "larger than the limit", err.clone()), e422.clone()]),
            },
            "/api/files/{filename}/download": {
                "get": {
                    "summary": "Download a file (HTTP Range supported)",
                    "parameters": [path_param("filename", None), parent.clone()],
                    "responses": { "200": { "description": "the file" }, "206": { "description": "the requested range" },
                                   "404": { "description": "no such file" }, "422": { "description": "path leaves the root" } }
                },
            },
            "/api/files/{filename}": {
                "delete": op("Delete a file", &[path_param("filename", None), parent.clone()], None, &[("204", "deleted", None), ("404", "no such file", err.clone()), e422.clone()]),
            },
            "/api/files/directories/{dirname}": {
                "post": op("Create a directory", &[path_param("dirname", None), parent.clone()], None, &[("201", "created", None), ("409", "exists", err.clone()), e422.clone()]),
                "delete": op("Delete a directory recursively", &[path_param("dirname", None), parent.clone()], None, &[("204", "deleted", None), ("404", "no such directory", err.clone()), e422.clone()]),
            },
        },
        "components": { "schemas": schemas() }
    })
}

fn schemas() -> Value {
    let ts = json!({ "type": ["string", "null"], "format": "date-time" });
    json!({
        "Error": { "type": "object", "required": ["code", "message"], "properties": {
            "code": { "type": "string" }, "message": { "type": "string" }, "field": { "type": "string" }, "detail": { "type": "string" } } },
        "Phase": { "type": "string", "enum": ["PENDING", "QUEUED", "PROCESSING", "COMPLETED", "ERROR", "ABORTED"] },
        "Job": { "type": "object", "properties": {
            "job_id": { "type": "string", "format": "uuid" }, "type": { "type": "string" },
            "label": { "type": "string", "minLength": 1, "maxLength": 50 }, "description": { "type": ["string", "null"], "maxLength": 255 },
            "phase": { "$ref": "#/components/schemas/Phase" }, "dir_path": { "type": "string" },
            "created_at": { "type": "string", "format": "date-time" }, "started_at": ts, "ended_at": ts,
            "execution_duration": { "type": ["number", "null"] }, "error": { "type": ["string", "null"] },
            "parent_job_id": { "type": ["string", "null"], "format": "uuid" }, "config": { "type": ["object", "null"] } } },
        "NewJob": { "type": "object", "required": ["type", "label"], "properties": {
            "type": { "type": "string", "example": "SCRIPT" }, "label": { "type": "string", "minLength": 1, "maxLength": 50 },
            "description": { "type": "string", "maxLength": 255 }, "config": { "type": "object" },
            "parent_job_id": { "type": "string", "format": "uuid" } } },
        "JobEdit": { "type": "object", "properties": { "label": { "type": "string" }, "description": { "type": "string" } } },
        "EndTimes": { "type": "object", "required": ["started_at", "ended_at"], "properties": {
            "started_at": { "type": "string", "format": "date-time" }, "ended_at": { "type": "string", "format": "date-time" } } },
        "JobPage": { "type": "object", "properties": { "total": { "type": "integer" }, "offset": { "type": "integer" },
            "limit": { "type": "integer" }, "jobs": { "type": "array", "items": { "$ref": "#/components/schemas/Job" } } } },
        "Listing": { "type": "object", "properties": {
            "parent_dir_path": { "type": "string" }, "total": { "type": "integer" }, "file_count": { "type": "integer" },
            "directory_count": { "type": "integer" },
            "files": { "type": "array", "items": { "type": "object", "properties": { "filename": { "type": "string" }, "size": { "type": "integer" }, "modified_at": ts } } },
            "directories": { "type": "array", "items": { "type": "object", "properties": { "dirname": { "type": "string" } } } } } },
    })
}

pub async fn document() -> HttpResponse {
    HttpResponse::Ok().json(build())
}

pub async fn docs_page() -> HttpResponse {
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>mljm API</title>
<script type="module" src="/static/rapidoc-9.3.8.min.js"></script></head>
<body><rapi-doc spec-url="/api/openapi.json" render-style="read" show-header="false" allow-try="true"
 regular-font="system-ui, sans-serif" mono-font="monospace" load-fonts="false"></rapi-doc></body></html>"#,
    )
}
