//! `mljm users …` (on the server's host, against its database), `mljm login` and
//! `mljm tokens …` (against a running server) — SPEC §11. Passwords come from a prompt, or
//! from standard input when it is not a terminal; never from a flag.

use std::{io::IsTerminal, path::PathBuf};

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::jobs::{Client, ServerOpts};
use crate::{auth::users, config::Config};

#[derive(Args, Debug)]
pub struct UsersArgs {
    /// Data directory [default: ./mljm-data]
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// postgres://… [default: SQLite file in the data dir]
    #[arg(long, global = true)]
    pub database_url: Option<String>,
    #[command(subcommand)]
    pub command: UsersCommand,
}

#[derive(Subcommand, Debug)]
pub enum UsersCommand {
    /// A new user; the password is asked for (or read from standard input).
    Add {
        name: String,
        #[arg(long, default_value = "member")]
        role: String,
    },
    /// Every user and their role.
    List,
    /// A new password for a user (their sessions end).
    Passwd { name: String },
    /// Remove a user, their sessions and tokens (their jobs stay).
    Remove { name: String },
    /// Change a user's role.
    Role { name: String, role: String },
}

/// A password from the terminal (asked twice) or the first line of standard input.
fn read_password(prompt: &str) -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(prompt)?;
        let again = rpassword::prompt_password("again: ")?;
        anyhow::ensure!(first == again, "the two passwords differ");
        Ok(first)
    } else {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        Ok(line.trim_end_matches(['\n', '\r']).to_string())
    }
}

pub async fn users(args: UsersArgs, file: Option<&std::path::Path>) -> anyhow::Result<()> {
    let config = Config::load(
        file,
        &crate::config::Overrides {
            data_dir: args.data_dir,
            database_url: args.database_url,
            ..Default::default()
        },
    )?;
    std::fs::create_dir_all(&config.data_dir)?;
    let db = crate::db::connect(&config.database_url()).await?;
    let db = &db;
    let done = |what: String| async move {
        crate::auth::audit(db, "user_change", Some(what.clone()), None, None).await;
        eprintln!("{what}");
    };
    match args.command {
        UsersCommand::Add { name, role } => {
            let role = users::role(&role)?;
            users::check_name(&name)?;
            let password = read_password(&format!("password for {name}: "))?;
            users::add(db, &name, role, &password).await?;
            done(format!("user {name} added ({})", role.as_str())).await;
        }
        UsersCommand::List => {
            println!("{:<32}  {:<7}  CREATED", "NAME", "ROLE");
            for u in users::list(db).await? {
                println!(
                    "{:<32}  {:<7}  {}",
                    u.name,
                    u.role,
                    u.created_at.format("%Y-%m-%d %H:%M")
                );
            }
        }
        UsersCommand::Passwd { name } => {
            let password = read_password(&format!("new password for {name}: "))?;
            users::set_password(db, &name, &password).await?;
            done(format!("password of {name} changed")).await;
        }
        UsersCommand::Remove { name } => {
            users::remove(db, &name).await?;
            done(format!("user {name} removed")).await;
        }
        UsersCommand::Role { name, role } => {
            let role = users::role(&role)?;
            users::set_role(db, &name, role).await?;
            done(format!("{name} is now a {}", role.as_str())).await;
        }
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    #[command(flatten)]
    pub opts: ServerOpts,
    /// The user name [default: $USER].
    #[arg(long)]
    pub user: Option<String>,
}

/// Where `mljm login` keeps its tokens: `$XDG_CONFIG_HOME/mljm/tokens.json`, or under
/// `~/.config`.
pub fn tokens_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("mljm").join("tokens.json"))
}

/// The token for `server`: `MLJM_TOKEN`, else the one `mljm login` kept.
pub fn token_for(server: &str) -> Option<String> {
    if let Ok(t) = std::env::var("MLJM_TOKEN")
        && !t.is_empty()
    {
        return Some(t);
    }
    let text = std::fs::read_to_string(tokens_file()?).ok()?;
    let map: Value = serde_json::from_str(&text).ok()?;
    map.get(server.trim_end_matches('/'))?
        .as_str()
        .map(str::to_string)
}

fn keep_token(server: &str, token: &str) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let path = tokens_file().ok_or_else(|| anyhow::anyhow!("no HOME to keep the token in"))?;
    let dir = path.parent().expect("a file in a folder");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mut map: Value = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| json!({}));
    map[server.trim_end_matches('/')] = json!(token);
    let tmp = path.with_extension("json.part");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    std::io::Write::write_all(&mut f, serde_json::to_string_pretty(&map)?.as_bytes())?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// Logs in with a password and keeps a new write token for this server (90 days).
pub async fn login(args: LoginArgs) -> anyhow::Result<()> {
    let user = args
        .user
        .or_else(|| std::env::var("USER").ok())
        .ok_or_else(|| anyhow::anyhow!("name the user: --user NAME"))?;
    let password = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("password for {user} at {}: ", args.opts.server))?
    } else {
        read_password("")?
    };
    let c = Client::new(&args.opts.server);
    let resp = c
        .send(
            c.http
                .post(c.url("/auth/login"))
                .json(&json!({"username": user, "password": password})),
        )
        .await?;
    let cookie = resp
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(crate::auth::SESSION_COOKIE))
        .and_then(|v| v.split(';').next())
        .ok_or_else(|| anyhow::anyhow!("the server set no session cookie"))?
        .to_string();
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let token: Value = c
        .send(
            c.http
                .post(c.url("/tokens/"))
                .header(reqwest::header::COOKIE, cookie.clone())
                .json(&json!({"name": format!("mljm login on {}", host.trim()),
                              "scope": "write", "expires_days": 90})),
        )
        .await?
        .json()
        .await?;
    let _ = c
        .send(
            c.http
                .post(c.url("/auth/logout"))
                .header(reqwest::header::COOKIE, cookie),
        )
        .await;
    let secret = token["token"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("the server answered no token"))?;
    let path = keep_token(&args.opts.server, secret)?;
    eprintln!(
        "logged in as {user}; the token (90 days) is kept in {}",
        path.display()
    );
    Ok(())
}

#[derive(Args, Debug)]
pub struct TokensArgs {
    #[command(flatten)]
    pub opts: ServerOpts,
    #[command(subcommand)]
    pub command: TokensCommand,
}

#[derive(Subcommand, Debug)]
pub enum TokensCommand {
    /// A new token, printed once.
    Create {
        #[arg(long)]
        name: String,
        /// read or write.
        #[arg(long, default_value = "write")]
        scope: String,
        /// How long it lasts, e.g. 90d [default: never expires].
        #[arg(long)]
        expires: Option<String>,
    },
    /// Your tokens (an admin's: everyone's), without their secrets.
    List,
    /// Revoke a token by its id.
    Revoke { id: String },
}

pub async fn tokens(args: TokensArgs) -> anyhow::Result<()> {
    let c = Client::new(&args.opts.server);
    match args.command {
        TokensCommand::Create {
            name,
            scope,
            expires,
        } => {
            let days = match expires {
                None => None,
                Some(e) => Some(e.trim_end_matches('d').parse::<u32>().map_err(|_| {
                    super::Usage(format!("--expires {e:?}: a count of days such as 90d"))
                })?),
            };
            let t: Value = c
                .send(
                    c.http
                        .post(c.url("/tokens/"))
                        .json(&json!({"name": name, "scope": scope, "expires_days": days})),
                )
                .await?
                .json()
                .await?;
            if args.opts.json {
                println!("{}", serde_json::to_string_pretty(&t)?);
            } else {
                println!("{}", t["token"].as_str().unwrap_or_default());
                eprintln!(
                    "token {} ({}, {}): shown this once; send it as Authorization: Bearer …, or set MLJM_TOKEN",
                    t["id"].as_str().unwrap_or_default(),
                    t["name"].as_str().unwrap_or_default(),
                    t["scope"].as_str().unwrap_or_default()
                );
            }
        }
        TokensCommand::List => {
            let list: Value = c.send(c.http.get(c.url("/tokens/"))).await?.json().await?;
            if args.opts.json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            println!(
                "{:<36}  {:<24}  {:<5}  {:<10}  STATE",
                "ID", "NAME", "SCOPE", "USER"
            );
            for t in list.as_array().into_iter().flatten() {
                let state = if !t["revoked_at"].is_null() {
                    "revoked".to_string()
                } else if let Some(e) = t["expires_at"].as_str() {
                    format!("expires {}", &e[..e.len().min(10)])
                } else {
                    "live".into()
                };
                println!(
                    "{:<36}  {:<24}  {:<5}  {:<10}  {state}",
                    t["id"].as_str().unwrap_or_default(),
                    t["name"].as_str().unwrap_or_default(),
                    t["scope"].as_str().unwrap_or_default(),
                    t["user"].as_str().unwrap_or_default()
                );
            }
        }
        TokensCommand::Revoke { id } => {
            c.send(c.http.delete(c.url(&format!("/tokens/{id}"))))
                .await?;
            eprintln!("token {id} revoked");
        }
    }
    Ok(())
}
