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
        "type": "object", "properties": { "file": { "type": "string", "contentMediaType": "application/octet-stream" } } } } } });
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
                                        "entrypoint": { "type": "string", "contentMediaType": "application/octet-stream" } } } } } })),
                    &[("202", "queued", Some(r("Job"))), e422.clone()]),
            },
            "/api/jobs/{job_id}": {
                "get": op("Read a job", std::slice::from_ref(&job_id), None, &[("200", "the job", Some(r("Job"))), e404.clone(), e422.clone()]),
                "patch": op("Edit label or description", std::slice::from_ref(&job_id), Some(json_body(r("JobEdit"))), &[("200", "the job", Some(r("Job"))), e404.clone(), e422.clone()]),
                "delete": op("Delete a job and its directory", std::slice::from_ref(&job_id), None, &[("204", "deleted", None), e404.clone(), e409.clone()]),
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
            "/api/jobs/{job_id}/continue": {
                "post": op("Continue a labelled ACTIVE_ML iteration: write oracle_data.json, append the performance estimate, create and run the next iteration",
                    &[job_id.clone(), json!({ "name": "allow_partial", "in": "query", "required": false, "schema": { "type": "boolean" } })], None,
                    &[("202", "the next iteration, queued", Some(r("Job"))), e404.clone(), ("409", "not a COMPLETED ACTIVE_ML job, already continued, or oracle spectra unlabelled", err.clone()), e422.clone()]),
            },
            "/api/jobs/{job_id}/chain": {
                "get": op("The iterations of an active-learning chain, first to last", std::slice::from_ref(&job_id), None,
                    &[("200", "the chain", Some(json!({ "type": "array", "items": r("ChainEntry") }))), e404.clone(), e409.clone(), e422.clone()]),
            },
            "/api/spectra/{filename}": {
                "get": op("A LAMOST spectrum of the survey: header fields, wave (Å) and flux",
                    &[path_param("filename", None)], None,
                    &[("200", "the spectrum", Some(r("Spectrum"))), ("404", "no such spectrum", err.clone()), ("422", "not a LAMOST spectrum name, or not a readable LAMOST spectrum", err.clone())]),
            },
            "/api/labellings/": {
                "post": op("Create a labelling", &[], Some(json_body(r("NewLabelling"))),
                    &[("201", "created", Some(r("Labelling"))), ("404", "no such job", err.clone()), e422.clone()]),
                "get": op("A job's labellings: ORACLE, PERFORMANCE_ESTIMATION, CANDIDATE", &[json!({ "name": "job_id", "in": "query", "required": true, "schema": { "type": "string", "format": "uuid" } })], None,
                    &[("200", "the labellings", Some(json!({ "type": "array", "items": r("Labelling") }))), e422.clone()]),
            },
            "/api/labellings/batch/": {
                "post": op("Create many labellings in one statement", &[], Some(json_body(json!({ "type": "array", "items": r("NewLabelling") }))),
                    &[("204", "created", None), ("404", "no such job", err.clone()), e422.clone()]),
                "patch": op("Patch many labellings, all or nothing", &[], Some(json_body(r("BatchPatch"))),
                    &[("204", "patched", None), ("400", "labelling_ids and labellings differ in length", err.clone()), ("404", "no such labelling", err.clone()), e422.clone()]),
            },
            "/api/labellings/{labelling_id}": {
                "get": op("Read a labelling", &[path_param("labelling_id", Some("uuid"))], None,
                    &[("200", "the labelling", Some(r("Labelling"))), ("404", "no such labelling", err.clone()), e422.clone()]),
                "patch": op("Label or comment a spectrum", &[path_param("labelling_id", Some("uuid"))], Some(json_body(r("LabellingPatch"))),
                    &[("200", "the labelling", Some(r("Labelling"))), ("404", "no such labelling", err.clone()), e422.clone()]),
            },
            "/api/files/": {
                "get": op("List a directory", std::slice::from_ref(&parent), None, &[("200", "the listing", Some(r("Listing"))), ("404", "no such directory", err.clone()), e422.clone()]),
            },
            "/api/files/{filename}/upload": {
                "post": op("Upload a file (streamed; files.upload_limit)", &[path_param("filename", None), parent.clone()], Some(multipart),
                    &[("201", "stored", None), ("409", "a directory has that name", err.clone()), ("413", "larger than the limit", err.clone()), e422.clone()]),
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
                "delete": op("Delete a directory recursively", &[path_param("dirname", None), parent.clone()], None, &[("204", "deleted", None), ("404", "no such directory", err.clone()), ("409", "the JOBS directory (delete jobs instead)", err.clone()), e422.clone()]),
            },
        },
        "components": { "schemas": schemas() }
    })
}

fn schemas() -> Value {
    let ts = json!({ "type": ["string", "null"], "format": "date-time" });
    let nstr = json!({ "type": ["string", "null"] });
    let nnum = json!({ "type": ["number", "null"] });
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
            "parent_job_id": { "type": ["string", "null"], "format": "uuid" }, "config": { "type": ["object", "null"] },
            "metrics": { "type": "object", "description": "training metrics (metrics.json) of a job that trained a model" } } },
        "NewJob": { "type": "object", "required": ["type", "label"], "properties": {
            "type": { "type": "string", "example": "SCRIPT" }, "label": { "type": "string", "minLength": 1, "maxLength": 50 },
            "description": { "type": "string", "maxLength": 255 }, "config": { "type": "object" },
            "parent_job_id": { "type": "string", "format": "uuid" } } },
        "JobEdit": { "type": "object", "properties": { "label": { "type": "string" }, "description": { "type": "string" } } },
        "EndTimes": { "type": "object", "required": ["started_at", "ended_at"], "properties": {
            "started_at": { "type": "string", "format": "date-time" }, "ended_at": { "type": "string", "format": "date-time" } } },
        "JobPage": { "type": "object", "properties": { "total": { "type": "integer" }, "offset": { "type": "integer" },
            "limit": { "type": "integer" }, "jobs": { "type": "array", "items": { "$ref": "#/components/schemas/Job" } } } },
        "Spectrum": { "type": "object", "properties": {
            "filename": { "type": "string" }, "targetname": nstr, "observed_at": nstr, "type": nstr, "subtype": nstr,
            "ra": nnum, "dec": nnum, "magtype": nstr, "mag_1": nnum, "mag_2": nnum, "mag_3": nnum, "mag_4": nnum, "mag_5": nnum,
            "mag_6": nnum, "mag_7": nnum, "sn_u": nnum, "sn_g": nnum, "sn_r": nnum, "sn_i": nnum, "sn_z": nnum, "z": nnum, "z_err": nnum,
            "wave": { "type": "array", "items": { "type": "number" } }, "flux": { "type": "array", "items": { "type": ["number", "null"] } } } },
        "SpectrumSet": { "type": "string", "enum": ["ORACLE", "PERFORMANCE_ESTIMATION", "CANDIDATE"] },
        "NewLabelling": { "type": "object", "required": ["job_id", "spectrum_filename", "spectrum_set"], "properties": {
            "job_id": { "type": "string", "format": "uuid" }, "spectrum_filename": { "type": "string", "minLength": 1, "maxLength": 255 },
            "spectrum_set": { "$ref": "#/components/schemas/SpectrumSet" }, "sequence_iteration": { "type": "integer", "minimum": 0 },
            "model_prediction": nstr, "user_label": nstr, "user_comment": nstr } },
        "Labelling": { "type": "object", "properties": {
            "labelling_id": { "type": "string", "format": "uuid" }, "job_id": { "type": "string", "format": "uuid" },
            "spectrum_filename": { "type": "string" }, "spectrum_set": { "$ref": "#/components/schemas/SpectrumSet" },
            "sequence_iteration": { "type": "integer" }, "model_prediction": nstr, "user_label": nstr, "user_comment": nstr } },
        "LabellingPatch": { "type": "object", "properties": {
            "user_label": { "type": "string", "maxLength": 100, "description": "\"\" clears" },
            "user_comment": { "type": "string", "maxLength": 2000 }, "model_prediction": { "type": "string", "maxLength": 100 } } },
        "BatchPatch": { "type": "object", "required": ["labelling_ids", "labellings"], "properties": {
            "labelling_ids": { "type": "array", "items": { "type": "string", "format": "uuid" } },
            "labellings": { "type": "array", "items": { "$ref": "#/components/schemas/LabellingPatch" } } } },
        "ChainEntry": { "type": "object", "properties": {
            "job_id": { "type": "string", "format": "uuid" }, "iteration": { "type": "integer" },
            "phase": { "$ref": "#/components/schemas/Phase" }, "label": { "type": "string" },
            "oracle_size": { "type": "integer" }, "labelled": { "type": "integer" }, "perf_estimate": nnum } },
        "Listing": { "type": "object", "properties": {
            "parent_dir_path": { "type": "string" }, "total": { "type": "integer" }, "file_count": { "type": "integer" },
            "directory_count": { "type": "integer" },
            "files": { "type": "array", "items": { "type": "object", "properties": { "filename": { "type": "string" }, "size": { "type": "integer" }, "modified_at": ts } } },
            "directories": { "type": "array", "items": { "type": "object", "properties": { "dirname": { "type": "string" } } } } } },
    })
}

/// Answers every operation can give, whatever its domain: 422 (a path, query or body that does
/// not parse, or a query that is not UTF-8), 421 (a foreign Host header), 431 (headers over
/// the bound), and for state changes 403 (another site) and, with a body, 413 (over the size
/// limit). Added where an operation does not name them itself.
fn add_common_responses(doc: &mut Value) {
    let error = json!({ "application/json": { "schema": r("Error") } });
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for (method, op) in paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|ops| ops.iter_mut())
    {
        let changes = method != "get";
        let has_body = op.get("requestBody").is_some();
        let responses = &mut op["responses"];
        let mut add = |code: &str, description: &str| {
            if responses.get(code).is_none() {
                responses[code] = json!({ "description": description, "content": error.clone() });
            }
        };
        add(
            "421",
            "the Host header names another server (server.allowed_hosts)",
        );
        add("422", "invalid path, query or body; `field` names it");
        add(
            "431",
            "the request headers are larger than the server accepts (32 KiB)",
        );
        if changes {
            add("403", "a state change requested by another site");
        }
        if has_body {
            add("413", "the body is larger than the server's limit");
        }
    }
}

pub async fn document() -> HttpResponse {
    let mut doc = build();
    add_common_responses(&mut doc);
    HttpResponse::Ok().json(doc)
}

pub async fn docs_page() -> HttpResponse {
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>mljm API</title>
<script type="module" src="/static/rapidoc-9.3.8.min.js"></script></head>
<body><rapi-doc spec-url="/api/openapi.json" render-style="read" show-header="false" allow-try="true"
 regular-font="system-ui, sans-serif" mono-font="monospace" load-fonts="false"></rapi-doc></body></html>"#,
    )
}
