//! Accounts (SPEC §11) against the real server: every operation of the OpenAPI document
//! refuses a request without credentials, roles and owners are enforced, tokens expire and
//! are revoked, sessions end at logout, failed logins are limited, a trusted proxy names the
//! user, and `serve` will not expose itself without accounts.

use std::time::Duration;

use mljm::{
    auth::{Role, users},
    config::{AuthMode, Config},
};
use serde_json::{Value, json};

use crate::helpers::{Backend, Options, TestApp, id, spawn_app_with};

crate::on_both_backends!(
    roles_and_owners_decide_who_may_do_what,
    tokens_expire_are_revoked_and_are_stored_as_digests,
    sessions_end_at_logout_and_failed_logins_are_limited,
);

crate::without_the_database!(
    every_operation_refuses_a_request_without_credentials,
    a_trusted_proxy_names_the_user_and_no_one_else_can,
    serve_on_a_network_address_needs_accounts,
    the_cli_logs_in_and_keeps_its_token,
);

fn password_mode(c: &mut Config) {
    c.auth.mode = Some(AuthMode::Password);
}

async fn password_app(b: Backend) -> TestApp {
    spawn_app_with(
        b,
        Options {
            tweak: password_mode,
            ..Default::default()
        },
    )
    .await
}

/// A client that sends `token` as its bearer.
fn bearer(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A user with `role` and a write token of theirs.
async fn user_with_token(app: &TestApp, name: &str, role: Role) -> reqwest::Client {
    users::add(&app.state.db, name, role, "correct horse battery")
        .await
        .unwrap();
    let (_, secret) = users::create_token(&app.state.db, name, "test", true, None)
        .await
        .unwrap();
    bearer(&secret)
}

/// The status of `GET path` by `client`.
async fn get_status(client: &reqwest::Client, app: &TestApp, path: &str) -> u16 {
    client
        .get(app.url(path))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn body(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn every_operation_refuses_a_request_without_credentials(b: Backend) {
    let app = password_app(b).await;
    let doc: Value = app.get_json("/api/openapi.json").await;
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut walked = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        let concrete = path
            .split('/')
            .map(|part| {
                if part.starts_with('{') {
                    "00000000-0000-0000-0000-000000000000"
                } else {
                    part
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        for method in ops.as_object().unwrap().keys() {
            let url = app.url(&concrete);
            let req = match method.as_str() {
                "get" => plain.get(&url),
                "post" => plain.post(&url),
                "put" => plain.put(&url),
                "patch" => plain.patch(&url),
                "delete" => plain.delete(&url),
                other => panic!("method {other}"),
            };
            let status = req.send().await.unwrap().status().as_u16();
            let public = ["/api/auth/login", "/api/health"].contains(&path.as_str());
            if public {
                assert_ne!(status, 401, "{method} {path} is public");
            } else {
                assert_eq!(status, 401, "{method} {path} without credentials");
            }
            walked += 1;
        }
    }
    assert!(walked > 30, "only {walked} operations");
    // The pages send to the login form, which (with the assets) anyone may load.
    let resp = plain
        .get(app.url("/jobs/new?type=SCRIPT"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(
        resp.headers()["location"],
        "/login?next=%2Fjobs%2Fnew%3Ftype%3DSCRIPT"
    );
    for open in ["/login", "/static/mljm.css", "/api/health"] {
        assert_eq!(
            plain.get(app.url(open)).send().await.unwrap().status(),
            200,
            "{open}"
        );
    }
    // A token that is not one is its own 401.
    let (status, err) = body(
        bearer("mljm_nonsense")
            .get(app.url("/api/jobs/"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    assert!(
        err["message"].as_str().unwrap().contains("not valid"),
        "{err}"
    );
}

async fn roles_and_owners_decide_who_may_do_what(b: Backend) {
    let app = password_app(b).await;
    let ada = user_with_token(&app, "ada", Role::Admin).await;
    let bob = user_with_token(&app, "bob", Role::Member).await;
    let cy = user_with_token(&app, "cy", Role::Member).await;
    let vi = user_with_token(&app, "vi", Role::Viewer).await;
    let prep = json!({"type": "DATA_PREPROCESSING", "label": "bob's"});

    // A viewer reads, and may not start anything.
    assert_eq!(get_status(&vi, &app, "/api/jobs/").await, 200);
    let (status, err) = body(
        vi.post(app.url("/api/jobs/"))
            .json(&prep)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 403);
    assert!(err["message"].as_str().unwrap().contains("viewer"), "{err}");
    let upload = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(b"x".to_vec()).file_name("x.txt"),
    );
    let resp = vi
        .post(app.url("/api/files/x.txt/upload"))
        .multipart(upload)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403, "a viewer uploads nothing");
    let resp = vi
        .post(app.url("/api/files/directories/mine"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403, "nor makes folders");

    // A member makes jobs, which are theirs.
    let (status, job) = body(
        bob.post(app.url("/api/jobs/"))
            .json(&prep)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{job}");
    assert_eq!(job["created_by"], "bob");
    let job_url = app.url(&format!("/api/jobs/{}", id(&job)));
    // Not SCRIPT, nor a cluster target: those run commands, for auth.command_roles (admin).
    let script = json!({"type": "SCRIPT", "label": "x", "config": {"command": ["true"]}});
    let (status, err) = body(
        bob.post(app.url("/api/jobs/"))
            .json(&script)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("auth.command_roles"),
        "{err}"
    );
    let form = reqwest::multipart::Form::new()
        .text(
            "config",
            json!({"label": "up", "command": "true"}).to_string(),
        )
        .part(
            "entrypoint",
            reqwest::multipart::Part::bytes(b"true".to_vec()).file_name("x.sh"),
        );
    let resp = bob
        .post(app.url("/api/jobs/submit"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403, "the submit form runs a command");
    let (status, _) = body(
        ada.post(app.url("/api/jobs/"))
            .json(&script)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "an admin may");

    // Another member may not relabel, run, abort or delete bob's job; bob and an admin may.
    let relabel = json!({"label": "cy's now"});
    let (status, err) = body(cy.patch(&job_url).json(&relabel).send().await.unwrap()).await;
    assert_eq!(status, 403);
    assert!(err["message"].as_str().unwrap().contains("bob"), "{err}");
    for action in ["RUN", "ABORT"] {
        let resp = cy
            .post(format!("{job_url}/process/{action}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{action}");
    }
    assert_eq!(cy.delete(&job_url).send().await.unwrap().status(), 403);
    // Nor the files in its folder.
    let folder = job["dir_path"].as_str().unwrap();
    std::fs::write(app.job_dir(&job).join("notes.txt"), "bob's").unwrap();
    let file_url = app.url(&format!("/api/files/notes.txt?parent_dir_path={folder}"));
    assert_eq!(cy.delete(&file_url).send().await.unwrap().status(), 403);
    assert_eq!(bob.delete(&file_url).send().await.unwrap().status(), 204);
    assert_eq!(
        bob.patch(&job_url)
            .json(&json!({"label": "bob's own"}))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(ada.delete(&job_url).send().await.unwrap().status(), 204);

    // The audit trail: admins only; it holds what happened, with who.
    assert_eq!(get_status(&bob, &app, "/api/audit").await, 403);
    let (status, trail) = body(
        ada.get(app.url("/api/audit?limit=50"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let entries: Vec<(String, String)> = trail["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or_default().to_string(),
                e["user_name"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    for want in [
        ("job_create", "bob"),
        ("job_delete", "ada"),
        ("job_create", "ada"),
    ] {
        assert!(
            entries.contains(&(want.0.to_string(), want.1.to_string())),
            "{want:?} in {entries:?}"
        );
    }
    // The same on the pages: the audit trail for admins, a token made and shown once.
    let page = ada.get(app.url("/audit")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("job_delete"));
    assert_eq!(get_status(&bob, &app, "/audit").await, 403);
    let page = vi
        .post(app.url("/tokens"))
        .form(&[("name", "web"), ("scope", "read"), ("expires_days", "30")])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let secret = page
        .split(r#"<pre id="token-secret">"#)
        .nth(1)
        .and_then(|r| r.split('<').next())
        .unwrap_or_else(|| panic!("no token shown: {page}"))
        .to_string();
    assert!(secret.starts_with("mljm_"), "{secret}");
    assert_eq!(
        bearer(&secret)
            .get(app.url("/api/jobs/"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let again = vi
        .get(app.url("/tokens"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!again.contains(&secret), "shown once only");
    // A viewer is not offered what they may not do.
    let home = vi
        .get(app.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!home.contains(r#"href="/jobs/new""#));
    // Nor the list's Abort and Delete buttons; the list names each job's owner.
    assert!(!home.contains("process/ABORT") && !home.contains("hx-delete"));
    assert!(
        home.contains(r#"<small class="owner" title="owner">ada</small>"#),
        "{home}"
    );
    // Who is asking.
    let (_, me) = body(vi.get(app.url("/api/auth/me")).send().await.unwrap()).await;
    assert_eq!(
        me,
        json!({"user": "vi", "role": "viewer", "mode": "password"})
    );
}

async fn tokens_expire_are_revoked_and_are_stored_as_digests(b: Backend) {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
    let app = password_app(b).await;
    let bob = user_with_token(&app, "bob", Role::Member).await;

    // A read token reads, and cannot RUN or make a write token.
    let (status, read) = body(
        bob.post(app.url("/api/tokens/"))
            .json(&json!({"name": "laptop", "scope": "read", "expires_days": 90}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{read}");
    let secret = read["token"].as_str().unwrap().to_string();
    let reader = bearer(&secret);
    let (_, job) = body(
        bob.post(app.url("/api/jobs/"))
            .json(&json!({"type": "DATA_PREPROCESSING", "label": "x"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(get_status(&reader, &app, "/api/jobs/").await, 200);
    let (status, err) = body(
        reader
            .post(app.url(&format!("/api/jobs/{}/process/RUN", id(&job))))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        err["message"].as_str().unwrap().contains("scope read"),
        "{err}"
    );

    // The table holds the digest, never the token.
    let rows = mljm::auth::entities::token::Entity::find()
        .all(&app.state.db)
        .await
        .unwrap();
    assert!(rows.iter().all(|r| r.hash != secret && r.hash.len() == 64));
    assert!(rows.iter().any(|r| r.hash == mljm::auth::digest(&secret)));
    // Listed without secrets, with when it was last used.
    let (_, list) = body(bob.get(app.url("/api/tokens/")).send().await.unwrap()).await;
    let laptop = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "laptop")
        .unwrap()
        .clone();
    assert!(
        laptop.get("token").is_none() && !laptop["last_used_at"].is_null(),
        "{laptop}"
    );

    // Expired: 401.
    mljm::auth::entities::token::Entity::update_many()
        .filter(mljm::auth::entities::token::Column::Hash.eq(mljm::auth::digest(&secret)))
        .col_expr(
            mljm::auth::entities::token::Column::ExpiresAt,
            Expr::value(chrono::Utc::now() - chrono::Duration::minutes(1)),
        )
        .exec(&app.state.db)
        .await
        .unwrap();
    assert_eq!(get_status(&reader, &app, "/api/jobs/").await, 401);

    // Revoked: 401 from then on.
    let (_, second) = body(
        bob.post(app.url("/api/tokens/"))
            .json(&json!({"name": "ci"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let ci = bearer(second["token"].as_str().unwrap());
    assert_eq!(get_status(&ci, &app, "/api/jobs/").await, 200);
    let resp = bob
        .delete(app.url(&format!("/api/tokens/{}", second["id"].as_str().unwrap())))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(get_status(&ci, &app, "/api/jobs/").await, 401);
}

async fn login(app: &TestApp, user: &str, password: &str) -> reqwest::Response {
    app.api
        .post(app.url("/api/auth/login"))
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap()
}

async fn sessions_end_at_logout_and_failed_logins_are_limited(b: Backend) {
    let app = password_app(b).await;
    users::add(&app.state.db, "bob", Role::Member, "correct horse battery")
        .await
        .unwrap();
    let resp = login(&app, "bob", "correct horse battery").await;
    assert_eq!(resp.status(), 200);
    let set = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(set.starts_with("mljm_session="), "{set}");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Lax"),
        "{set}"
    );
    assert!(
        !set.contains("Secure"),
        "plain HTTP: no Secure flag ({set})"
    );
    let cookie = set.split(';').next().unwrap().to_string();
    let with_cookie = |path: &str| {
        app.api
            .get(app.url(path))
            .header(reqwest::header::COOKIE, cookie.clone())
            .send()
    };
    assert_eq!(with_cookie("/api/jobs/").await.unwrap().status(), 200);
    // The page shows who is logged in.
    let page = with_cookie("/").await.unwrap().text().await.unwrap();
    assert!(page.contains(r#"<span id="who">bob</span>"#), "{page}");
    // Behind an HTTPS proxy the cookie is Secure.
    let https = app
        .api
        .post(app.url("/api/auth/login"))
        .header("X-Forwarded-Proto", "https")
        .json(&json!({"username": "bob", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    let secure = https.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(secure.contains("Secure"), "{secure}");
    // A session unused for longer than session_idle_h (12 h) is over.
    {
        use mljm::auth::entities::session;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
        let idle = secure.split(';').next().unwrap().split_once('=').unwrap().1;
        session::Entity::update_many()
            .filter(session::Column::Hash.eq(mljm::auth::digest(idle)))
            .col_expr(
                session::Column::LastSeenAt,
                Expr::value(chrono::Utc::now() - chrono::Duration::hours(13)),
            )
            .exec(&app.state.db)
            .await
            .unwrap();
        let stale = app
            .api
            .get(app.url("/api/jobs/"))
            .header(reqwest::header::COOKIE, format!("mljm_session={idle}"))
            .send()
            .await
            .unwrap();
        assert_eq!(stale.status(), 401, "an idle session has expired");
    }
    let out = app
        .api
        .post(app.url("/api/auth/logout"))
        .header(reqwest::header::COOKIE, cookie.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    assert_eq!(
        with_cookie("/api/jobs/").await.unwrap().status(),
        401,
        "logout ends the session on the server, whatever the browser keeps"
    );
    let rows = {
        use sea_orm::{EntityTrait, PaginatorTrait};
        mljm::auth::entities::session::Entity::find()
            .count(&app.state.db)
            .await
            .unwrap()
    };
    assert_eq!(rows, 0);

    // Five wrong passwords; the sixth attempt is 429 even with the right password, and a
    // name that does not exist reads the same as a wrong password.
    let (status, nobody) = body(login(&app, "nobody", "whatever123").await).await;
    assert_eq!(status, 401);
    let (_, wrong) = body(login(&app, "bob", "wrong password").await).await;
    assert_eq!(
        nobody["message"], wrong["message"],
        "no hint that an account exists"
    );
    for _ in 0..3 {
        assert_eq!(login(&app, "bob", "wrong password").await.status(), 401);
    }
    // The sixth wrong password within the minute…
    assert_eq!(login(&app, "bob", "wrong password").await.status(), 429);
    // …and the right one is refused until the window passes.
    let refused = login(&app, "bob", "correct horse battery").await;
    assert_eq!(refused.status(), 429);
    let wait: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
}

fn proxy_trusting_loopback(c: &mut Config) {
    c.auth.mode = Some(AuthMode::Proxy);
    c.auth.proxy.trusted = vec!["127.0.0.1/32".into()];
}

fn proxy_trusting_elsewhere(c: &mut Config) {
    c.auth.mode = Some(AuthMode::Proxy);
    c.auth.proxy.trusted = vec!["10.0.0.0/8".into()];
}

async fn a_trusted_proxy_names_the_user_and_no_one_else_can(b: Backend) {
    for (tweak, trusted) in [
        (proxy_trusting_loopback as fn(&mut Config), true),
        (proxy_trusting_elsewhere, false),
    ] {
        let app = spawn_app_with(
            b.clone(),
            Options {
                tweak,
                ..Default::default()
            },
        )
        .await;
        let resp = app
            .api
            .get(app.url("/api/auth/me"))
            .header("X-Forwarded-User", "zoe")
            .send()
            .await
            .unwrap();
        if trusted {
            let (status, me) = body(resp).await;
            assert_eq!(status, 200);
            assert_eq!(me["user"], "zoe");
            assert_eq!(me["role"], "member", "the default role of a new user");
            let all = users::list(&app.state.db).await.unwrap();
            assert_eq!(all.len(), 1);
            assert!(all[0].password_hash.is_none());
        } else {
            assert_eq!(
                resp.status(),
                401,
                "the header from an untrusted address is ignored"
            );
            assert!(users::list(&app.state.db).await.unwrap().is_empty());
        }
    }
}

async fn serve_on_a_network_address_needs_accounts(_b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_mljm"));
    let out = mljm::child::no_inherit(&mut c)
        .args(["serve", "--bind", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .env("MLJM_CONFIG", "/dev/null")
        .env("MLJM_AUTH__MODE", "off")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        said.contains("refusing to serve 0.0.0.0:0 with auth.mode = \"off\"")
            && said.contains("allow_unauthenticated"),
        "{said}"
    );
    // Without a mode, a network address means accounts: it starts, and asks for them.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bind = format!("0.0.0.0:{port}");
    let log = dir.path().join("serve.log");
    let mut child = crate::helpers::mljm_child(
        &[
            "serve",
            "--bind",
            &bind,
            "--data-dir",
            dir.path().to_str().unwrap(),
        ],
        &log,
    )
    .spawn()
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let health = format!("http://127.0.0.1:{port}/api/health");
    while reqwest::get(&health).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "serve never answered: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let resp = reqwest::get(format!("http://127.0.0.1:{port}/api/jobs/"))
        .await
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(resp.status(), 401);
}

/// `mljm login` keeps a token (mode 0600) that the other commands send; without it they are
/// refused with the server's words.
async fn the_cli_logs_in_and_keeps_its_token(b: Backend) {
    use std::os::unix::fs::PermissionsExt;
    let app = password_app(b).await;
    users::add(&app.state.db, "bob", Role::Member, "correct horse battery")
        .await
        .unwrap();
    let home = tempfile::tempdir().unwrap();
    let server = format!("http://127.0.0.1:{}", app.port);
    let run = |args: Vec<String>, stdin: &'static str| {
        let home = home.path().to_path_buf();
        async move {
            let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_mljm"));
            mljm::child::no_inherit_async(&mut c)
                .args(&args)
                .env("XDG_CONFIG_HOME", &home)
                .env_remove("MLJM_TOKEN")
                .env("MLJM_CONFIG", "/dev/null")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            let mut child = c.spawn().unwrap();
            use tokio::io::AsyncWriteExt;
            let mut input = child.stdin.take().unwrap();
            input.write_all(stdin.as_bytes()).await.unwrap();
            drop(input);
            child.wait_with_output().await.unwrap()
        }
    };
    let list = vec![
        "jobs".into(),
        "list".into(),
        "--server".into(),
        server.clone(),
    ];
    let out = run(list.clone(), "").await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{out:?}"
    );
    let wrong = run(
        vec![
            "login".into(),
            "--server".into(),
            server.clone(),
            "--user".into(),
            "bob".into(),
        ],
        "not the password\n",
    )
    .await;
    assert!(!wrong.status.success());
    let ok = run(
        vec![
            "login".into(),
            "--server".into(),
            server.clone(),
            "--user".into(),
            "bob".into(),
        ],
        "correct horse battery\n",
    )
    .await;
    assert!(ok.status.success(), "{ok:?}");
    let kept = home.path().join("mljm/tokens.json");
    let mode = std::fs::metadata(&kept).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let out = run(list, "").await;
    assert!(out.status.success(), "{out:?}");
    // The token is bob's, named for this host, and lasts 90 days.
    let (_, tokens) = body(
        bearer(
            serde_json::from_str::<Value>(&std::fs::read_to_string(&kept).unwrap()).unwrap()
                [&server]
                .as_str()
                .unwrap(),
        )
        .get(app.url("/api/tokens/"))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(tokens[0]["user"], "bob");
    assert!(!tokens[0]["expires_at"].is_null());
}
