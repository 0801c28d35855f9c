//! SCRIPT: runs a command with the job directory as working directory. Its stdout and stderr
//! go to `log.txt` as produced; exit status 0 completes the job; ABORT kills its process group.
//! A watcher in that group kills it when the worker dies, even by SIGKILL (grandchildren
//! included, which `PR_SET_PDEATHSIG` on the script alone would leave running).

use std::{collections::BTreeMap, os::fd::AsRawFd, process::Stdio, time::Duration};

use anyhow::Context;
use futures_util::{FutureExt, future::BoxFuture};
use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::job_types::{
    ConfigError, FieldKind, FormField, JobContext, JobLog, JobType, parse_config,
};

pub struct Script;

#[derive(Debug, Deserialize)]
pub struct ScriptConfig {
    pub command: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub timeout_s: Option<f64>,
}

const MAX_TIMEOUT_S: f64 = 365.0 * 24.0 * 3600.0;

impl ScriptConfig {
    pub fn parse(config: &Value) -> Result<ScriptConfig, ConfigError> {
        let c: ScriptConfig = parse_config(config)?;
        match c.command.first() {
            None => {
                return Err(ConfigError::new(
                    "command",
                    "must name a program: [\"prog\", \"arg\", …]",
                ));
            }
            Some(p) if p.trim().is_empty() => {
                return Err(ConfigError::new("command[0]", "the program name is empty"));
            }
            _ => {}
        }
        if let Some(i) = c.command.iter().position(|a| a.contains('\0')) {
            return Err(ConfigError::new(
                format!("command[{i}]"),
                "must not contain NUL",
            ));
        }
        for (k, v) in &c.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
                return Err(ConfigError::new(
                    format!("env.{k}"),
                    "names must be non-empty without '=' or NUL; values without NUL",
                ));
            }
        }
        if let Some(t) = c.timeout_s
            && !(t.is_finite() && t > 0.0 && t <= MAX_TIMEOUT_S)
        {
            return Err(ConfigError::new(
                "timeout_s",
                format!("must be between 0 and {MAX_TIMEOUT_S} seconds (got {t})"),
            ));
        }
        Ok(c)
    }
}

impl JobType for Script {
    fn name(&self) -> &'static str {
        "SCRIPT"
    }

    fn known_keys(&self) -> &'static [&'static str] {
        &["command", "env", "timeout_s"]
    }

    fn validate(&self, config: &Value) -> Result<(), ConfigError> {
        ScriptConfig::parse(config).map(|_| ())
    }

    fn form(&self) -> Vec<FormField> {
        vec![
            FormField::new("command", FieldKind::List, "")
                .required()
                .help(r#"the program and its arguments, comma-separated or a JSON array such as ["sh", "-c", "echo hi"]"#),
            FormField::new("timeout_s", FieldKind::Number, "").help("seconds; empty for none"),
        ]
    }

    fn run(&self, ctx: JobContext) -> BoxFuture<'static, anyhow::Result<()>> {
        run_script(ctx).boxed()
    }
}

async fn run_script(ctx: JobContext) -> anyhow::Result<()> {
    let cfg = ScriptConfig::parse(&ctx.config)?;
    ctx.log.line(&format!("running {:?}", cfg.command));
    let mut command = tokio::process::Command::new(&cfg.command[0]);
    crate::child::no_inherit_async(&mut command);
    // The write end is held by this process alone (std's pipe closes both ends on exec): when
    // it dies, even by SIGKILL, the script's watcher reads end-of-file and takes the whole
    // process group with it.
    let (watch_read, watch_write) = std::io::pipe()?;
    let read_fd = watch_read.as_raw_fd();
    // SAFETY: only async-signal-safe calls (prctl, fork, waitpid, close, read, killpg,
    // _exit) run between fork and exec.
    unsafe {
        command.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            start_watcher(read_fd);
            Ok(())
        });
    }
    let mut child = command
        .args(&cfg.command[1..])
        .current_dir(&ctx.dir)
        .envs(&cfg.env)
        .env("MLJM_JOB_ID", ctx.job_id.to_string())
        .env("MLJM_JOB_DIR", &ctx.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {:?}", cfg.command[0]))?;
    drop(watch_read);
    let pgid = child.id().map(|p| p as i32);
    // Whatever happens below, the whole process group goes with the job.
    let _group = KillGroupOnDrop(pgid);
    let out = tokio::spawn(copy_to_log(child.stdout.take(), ctx.log.clone()));
    let err = tokio::spawn(copy_to_log(child.stderr.take(), ctx.log.clone()));
    let deadline = cfg
        .timeout_s
        .map(|t| tokio::time::Instant::now() + Duration::from_secs_f64(t));
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.context("waiting for the script")?,
            _ = tick.tick() => {
                if ctx.cancel.is_cancelled() {
                    kill_group(pgid);
                    let _ = child.wait().await;
                    anyhow::bail!("aborted");
                }
                if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                    kill_group(pgid);
                    let _ = child.wait().await;
                    anyhow::bail!("timed out after {} s (timeout_s)", cfg.timeout_s.unwrap_or_default());
                }
            }
        }
    };
    // Grandchildren may keep the pipes open; the group is killed before we drain them.
    kill_group(pgid);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = out.await;
        let _ = err.await;
    })
    .await;
    drop(watch_write);
    if status.success() {
        ctx.log.line("script exited with status 0");
        Ok(())
    } else {
        match status.code() {
            Some(code) => anyhow::bail!("script exited with status {code}"),
            None => {
                use std::os::unix::process::ExitStatusExt;
                anyhow::bail!(
                    "script killed by signal {}",
                    status.signal().unwrap_or_default()
                )
            }
        }
    }
}

async fn copy_to_log(stream: Option<impl AsyncRead + Unpin>, log: JobLog) {
    let Some(mut stream) = stream else { return };
    let mut buf = vec![0u8; 8192];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
        log.write_bytes(&buf[..n]);
    }
}

/// In the script's process (its own group, before exec): forks a watcher that is not the
/// script's child (so a shell's `wait` never waits for it), keeps only `read_fd` open, and
/// kills the group once the worker's end of the pipe is gone — the worker ended the job, or
/// died. The watcher is in the group, so the group id cannot be reused while it waits.
///
/// # Safety
/// Called between fork and exec: async-signal-safe calls only.
unsafe fn start_watcher(read_fd: libc::c_int) {
    unsafe {
        let middle = libc::fork();
        if middle > 0 {
            libc::waitpid(middle, std::ptr::null_mut(), 0);
            return;
        }
        if middle < 0 {
            return;
        }
        // The middle process leaves at once; its child is adopted by init.
        if libc::fork() != 0 {
            libc::_exit(0);
        }
        close_all_but(read_fd);
        let mut byte = 0u8;
        loop {
            let n = libc::read(read_fd, (&raw mut byte).cast(), 1);
            if n == 0 || (n < 0 && *libc::__errno_location() != libc::EINTR) {
                break;
            }
        }
        libc::killpg(libc::getpgrp(), libc::SIGKILL);
        libc::_exit(0);
    }
}

/// Closes every descriptor but `keep` (the log pipes too, so they reach end-of-file when the
/// script ends).
///
/// # Safety
/// Async-signal-safe; only in a process that owns nothing else.
unsafe fn close_all_but(keep: libc::c_int) {
    unsafe {
        let ranged = (keep == 0
            || libc::syscall(libc::SYS_close_range, 0u32, (keep - 1) as u32, 0u32) == 0)
            && libc::syscall(libc::SYS_close_range, (keep + 1) as u32, u32::MAX, 0u32) == 0;
        if !ranged {
            for fd in (0..4096).filter(|&fd| fd != keep) {
                libc::close(fd);
            }
        }
    }
}

fn kill_group(pgid: Option<i32>) {
    if let Some(pg) = pgid.filter(|p| *p > 1) {
        // SAFETY: killpg only sends a signal; a stale group id yields ESRCH, which we ignore.
        unsafe {
            libc::killpg(pg, libc::SIGKILL);
        }
    }
}

struct KillGroupOnDrop(Option<i32>);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        kill_group(self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_empty_command_is_rejected() {
        assert_eq!(
            ScriptConfig::parse(&json!({"command": []}))
                .unwrap_err()
                .field,
            "command"
        );
    }

    #[test]
    fn a_negative_timeout_is_rejected() {
        assert_eq!(
            ScriptConfig::parse(&json!({"command": ["true"], "timeout_s": -1}))
                .unwrap_err()
                .field,
            "timeout_s"
        );
    }

    #[test]
    fn env_values_must_be_strings() {
        assert_eq!(
            ScriptConfig::parse(&json!({"command": ["true"], "env": {"A": 1}}))
                .unwrap_err()
                .field,
            "env.A"
        );
    }
}
