//! SPEC §3 files: the happy paths, Range downloads, the upload limit, and refusal of every
//! path that would leave the storage root — on every endpoint.

use reqwest::multipart::{Form, Part};
use serde_json::Value;

use crate::helpers::{Backend, Options, TestApp, spawn_app, spawn_app_with};

// The file API is the storage root alone: no row is read or written.
crate::without_the_database!(
    files_can_be_uploaded_listed_downloaded_and_deleted,
    a_range_request_gets_206_and_the_bytes,
    an_upload_above_the_limit_is_413_and_leaves_nothing,
    no_endpoint_reaches_outside_the_storage_root,
);

fn form(bytes: &[u8]) -> Form {
    Form::new().part("file", Part::bytes(bytes.to_vec()).file_name("x.bin"))
}

async fn upload(app: &TestApp, name: &str, parent: &str, bytes: &[u8]) -> reqwest::Response {
    app.api
        .post(app.url(&format!("/api/files/{name}/upload")))
        .query(&[("parent_dir_path", parent)])
        .multipart(form(bytes))
        .send()
        .await
        .unwrap()
}

async fn files_can_be_uploaded_listed_downloaded_and_deleted(b: Backend) {
    let app = spawn_app(b).await;
    let r = app
        .post("/api/files/directories/survey?parent_dir_path=/")
        .await;
    assert_eq!(r.status(), 201);
    assert_eq!(
        app.post("/api/files/directories/survey?parent_dir_path=/")
            .await
            .status(),
        409
    );
    assert_eq!(
        upload(&app, "a.txt", "/survey", b"alpha").await.status(),
        201
    );
    assert!(app.data_dir.join("files/survey/a.txt").exists());
    let listing: Value = app.get_json("/api/files/?parent_dir_path=/survey").await;
    assert_eq!(listing["parent_dir_path"], "/survey");
    assert_eq!(listing["file_count"], 1);
    assert_eq!(listing["files"][0]["filename"], "a.txt");
    assert_eq!(listing["files"][0]["size"], 5);
    let root: Value = app.get_json("/api/files/").await;
    let dirs: Vec<&str> = root["directories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["dirname"].as_str().unwrap())
        .collect();
    assert_eq!(dirs, vec!["JOBS", "survey"]);
    assert_eq!(root["total"], 2);
    let body = app
        .get("/api/files/a.txt/download?parent_dir_path=/survey")
        .await;
    assert_eq!(body.status(), 200);
    assert_eq!(body.bytes().await.unwrap().as_ref(), b"alpha");
    assert_eq!(
        app.get("/api/files/nope.txt/download?parent_dir_path=/survey")
            .await
            .status(),
        404
    );
    assert_eq!(
        app.get("/api/files/?parent_dir_path=/nowhere")
            .await
            .status(),
        404
    );
    assert_eq!(
        app.delete("/api/files/a.txt?parent_dir_path=/survey")
            .await
            .status(),
        204
    );
    assert_eq!(
        app.delete("/api/files/a.txt?parent_dir_path=/survey")
            .await
            .status(),
        404
    );
    assert_eq!(
        app.delete("/api/files/directories/survey?parent_dir_path=/")
            .await
            .status(),
        204
    );
    assert_eq!(
        app.delete("/api/files/directories/survey?parent_dir_path=/")
            .await
            .status(),
        404
    );
    assert!(!app.data_dir.join("files/survey").exists());
    // The job directories' home is not deleted through the files API.
    assert_eq!(
        app.delete("/api/files/directories/JOBS?parent_dir_path=/")
            .await
            .status(),
        409
    );
}

async fn a_range_request_gets_206_and_the_bytes(b: Backend) {
    let app = spawn_app(b).await;
    assert_eq!(
        upload(&app, "r.bin", "/", b"0123456789").await.status(),
        201
    );
    let r = app
        .api
        .get(app.url("/api/files/r.bin/download"))
        .header("Range", "bytes=2-5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 2-5/10");
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"2345");
}

async fn an_upload_above_the_limit_is_413_and_leaves_nothing(b: Backend) {
    let app = spawn_app_with(
        b,
        Options {
            tweak: |c| c.files.upload_limit = 1000,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        upload(&app, "small.bin", "/", &[7u8; 1000]).await.status(),
        201
    );
    let r = upload(&app, "big.bin", "/", &[7u8; 5000]).await;
    assert_eq!(r.status(), 413);
    // Streamed without Content-Length: the limit still holds mid-stream.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..100).map(|_| Ok(vec![1u8; 100])).collect();
    let part = Part::stream(reqwest::Body::wrap_stream(futures_util::stream::iter(
        chunks,
    )))
    .file_name("s.bin");
    let r = app
        .api
        .post(app.url("/api/files/streamed.bin/upload"))
        .multipart(Form::new().part("file", part))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let names: Vec<String> = std::fs::read_dir(app.data_dir.join("files"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("big") || n.starts_with("streamed") || n.starts_with(".upload")),
        "{names:?}"
    );
}

async fn no_endpoint_reaches_outside_the_storage_root(b: Backend) {
    let app = spawn_app(b).await;
    // Outside the root: a sibling of files/ with a secret and a directory.
    let outside = app.data_dir.join("outside");
    std::fs::create_dir_all(outside.join("victim")).unwrap();
    std::fs::write(outside.join("secret.txt"), "secret").unwrap();
    std::fs::write(app.data_dir.join("secret.txt"), "secret").unwrap();
    std::os::unix::fs::symlink(&outside, app.data_dir.join("files/link")).unwrap();
    std::os::unix::fs::symlink(
        outside.join("secret.txt"),
        app.data_dir.join("files/secret-link.txt"),
    )
    .unwrap();

    let parents = [
        "/..",
        "/../",
        "%2e%2e",
        "/%2E%2E/outside",
        "/JOBS/../..",
        "/link",
        "/link/victim",
    ];
    for parent in parents {
        let q = format!("parent_dir_path={parent}");
        let expect =
            |r: reqwest::StatusCode, what: &str| assert_eq!(r, 422, "{what} with {parent}");
        expect(app.get(&format!("/api/files/?{q}")).await.status(), "list");
        expect(
            app.get(&format!("/api/files/secret.txt/download?{q}"))
                .await
                .status(),
            "download",
        );
        expect(
            app.delete(&format!("/api/files/secret.txt?{q}"))
                .await
                .status(),
            "delete",
        );
        expect(
            app.post(&format!("/api/files/directories/new?{q}"))
                .await
                .status(),
            "mkdir",
        );
        expect(
            app.delete(&format!("/api/files/directories/victim?{q}"))
                .await
                .status(),
            "rmdir",
        );
        let r = app
            .api
            .post(app.url(&format!("/api/files/planted.txt/upload?{q}")))
            .multipart(form(b"x"))
            .send()
            .await
            .unwrap();
        expect(r.status(), "upload");
    }
    // Names that are paths: `..`, encoded `..`, absolute, and symlinks pointing out. Sent
    // raw, because an HTTP client would normalise the dot segments before the server sees them.
    for name in [
        "..",
        "%2e%2e",
        "%2E%2e",
        "%2Fetc%2Fpasswd",
        "..%2Fsecret.txt",
        "link",
        "secret-link.txt",
    ] {
        let mut requests = vec![
            ("GET", format!("/api/files/{name}/download")),
            ("DELETE", format!("/api/files/{name}")),
            ("DELETE", format!("/api/files/directories/{name}")),
            ("POST", format!("/api/files/{name}/upload")),
        ];
        if !name.contains("link") {
            requests.push(("POST", format!("/api/files/directories/{name}")));
        }
        for (method, path) in requests {
            assert_eq!(
                raw_status(app.port, method, &path).await,
                422,
                "{method} {path}"
            );
        }
    }
    // Nothing outside was read, written, listed or deleted.
    assert_eq!(
        std::fs::read_to_string(outside.join("secret.txt")).unwrap(),
        "secret"
    );
    assert_eq!(
        std::fs::read_to_string(app.data_dir.join("secret.txt")).unwrap(),
        "secret"
    );
    assert!(outside.join("victim").is_dir());
    assert!(!outside.join("new").exists() && !outside.join("planted.txt").exists());
    assert!(!app.data_dir.join("planted.txt").exists() && !app.data_dir.join("new").exists());
    // The root still lists, with links shown as links: no size or kind read from outside,
    // and a dangling link does not break the listing.
    std::os::unix::fs::symlink(
        app.data_dir.join("nowhere"),
        app.data_dir.join("files/dangling"),
    )
    .unwrap();
    let root: Value = app.get_json("/api/files/").await;
    let files = root["files"].as_array().unwrap();
    let link = files
        .iter()
        .find(|f| f["filename"] == "secret-link.txt")
        .expect("the link is listed");
    assert_ne!(link["size"], 6, "the size of the outside file leaked");
    assert!(
        files.iter().any(|f| f["filename"] == "link"),
        "a link to an outside directory is not shown as a directory"
    );
    assert!(files.iter().any(|f| f["filename"] == "dangling"));
    // An absolute parent path is rooted in the storage, not the filesystem.
    let r = app.get("/api/files/?parent_dir_path=/etc").await;
    assert_eq!(r.status(), 404);
    // Normalised paths that stay inside are fine.
    assert_eq!(
        app.get("/api/files/?parent_dir_path=/JOBS/../JOBS/.")
            .await
            .status(),
        200
    );
}

/// Sends one request byte for byte as given (no client-side path normalisation).
async fn raw_status(port: u16, method: &str, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut resp = Vec::new();
    stream.read_to_end(&mut resp).await.unwrap();
    let head = String::from_utf8_lossy(&resp);
    head.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}
