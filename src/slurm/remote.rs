//! Running a cluster's SLURM commands: on this host (`submit = "local"`), or over SSH with the
//! system OpenSSH — one ControlMaster connection per cluster, reused by every call, strict
//! host-key checking against the configured known_hosts, key authentication only
//! (`BatchMode`, so a refused key is an error at once, never a password prompt). OpenSSH is
//! used rather than an SSH library so that a site's own client setup (ProxyJump, Kerberos,
//! agent, ciphers) keeps working and mljm carries no cryptography of its own.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use tokio::{io::AsyncWriteExt, process::Command};

use crate::config::{ClusterConfig, Submit};

/// A SLURM call that longer than this has failed (the poll backs off and tries again).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct SlurmError(pub String);

pub struct Slurm {
    pub cfg: ClusterConfig,
    /// Where this cluster's SSH control socket lives (short: a socket path is ≤ 104 bytes).
    control_dir: PathBuf,
}

/// Quotes one word for a POSIX shell.
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./:=,+@%".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

impl Slurm {
    pub fn new(cfg: ClusterConfig) -> Slurm {
        let control_dir = std::env::temp_dir().join(format!("mljm-ssh-{}", std::process::id()));
        Slurm { cfg, control_dir }
    }

    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// The path of a SLURM command (`sbatch`, `squeue`, …) on the cluster.
    fn program(&self, name: &str) -> String {
        if self.cfg.slurm_bin.is_empty() {
            name.to_string()
        } else {
            Path::new(&self.cfg.slurm_bin)
                .join(name)
                .display()
                .to_string()
        }
    }

    /// `ssh` with this cluster's options; `control` (`-O exit`) goes before the destination.
    fn ssh(&self, control: &[&str]) -> Command {
        let mut c = Command::new("ssh");
        crate::child::no_inherit_async(&mut c);
        let _ = std::fs::create_dir_all(&self.control_dir);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ =
                std::fs::set_permissions(&self.control_dir, std::fs::Permissions::from_mode(0o700));
        }
        let socket = self.control_dir.join(format!("{}.sock", self.cfg.name));
        c.arg("-p")
            .arg(self.cfg.port.to_string())
            .arg("-i")
            .arg(&self.cfg.identity_file)
            .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"])
            .args(["-o", "StrictHostKeyChecking=yes"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.cfg.known_hosts))
            .args(["-o", "ControlMaster=auto", "-o", "ControlPersist=600"])
            .arg("-o")
            .arg(format!("ControlPath={}", socket.display()))
            .args(["-o", "ConnectTimeout=15", "-o", "ServerAliveInterval=15"])
            .args(["-o", "LogLevel=ERROR"])
            .args(control)
            .arg(format!("{}@{}", self.cfg.user, self.cfg.host))
            .arg("--");
        c
    }

    /// Runs `program args…` on the cluster and returns its stdout; a non-zero exit is an
    /// error carrying its stderr (and, over SSH, what went wrong with the connection).
    pub async fn call(&self, program: &str, args: &[String]) -> Result<String, SlurmError> {
        let program = self.program(program);
        self.exec(&program, args, None).await
    }

    /// A shell command line on the cluster (SSH: the login shell; local: `sh -c`).
    pub async fn shell(&self, line: &str) -> Result<String, SlurmError> {
        match self.cfg.submit {
            Submit::Local => self.exec("sh", &["-c".into(), line.into()], None).await,
            Submit::Ssh => self.exec_ssh(line, None).await,
        }
    }

    /// Writes `bytes` to `path` on the cluster (staging a job's files over SSH).
    pub async fn put(&self, bytes: &[u8], path: &str) -> Result<(), SlurmError> {
        let line = format!(
            "mkdir -p {} && cat > {}.part && mv {}.part {}",
            sh_quote(parent(path)),
            sh_quote(path),
            sh_quote(path),
            sh_quote(path)
        );
        match self.cfg.submit {
            Submit::Local => self
                .exec("sh", &["-c".into(), line], Some(bytes))
                .await
                .map(drop),
            Submit::Ssh => self.exec_ssh(&line, Some(bytes)).await.map(drop),
        }
    }

    async fn exec(
        &self,
        program: &str,
        args: &[String],
        stdin: Option<&[u8]>,
    ) -> Result<String, SlurmError> {
        match self.cfg.submit {
            Submit::Local => {
                let mut c = Command::new(program);
                crate::child::no_inherit_async(&mut c).args(args);
                run(c, stdin, program).await
            }
            Submit::Ssh => {
                let line = std::iter::once(program.to_string())
                    .chain(args.iter().map(|a| sh_quote(a)))
                    .collect::<Vec<_>>()
                    .join(" ");
                self.exec_ssh(&line, stdin).await
            }
        }
    }

    async fn exec_ssh(&self, line: &str, stdin: Option<&[u8]>) -> Result<String, SlurmError> {
        let mut c = self.ssh(&[]);
        c.arg(line);
        run(c, stdin, "ssh").await.map_err(|e| {
            let m = &e.0;
            SlurmError(if m.contains("Host key verification failed") {
                format!(
                    "ssh {}@{}:{}: the host key is not in {} (or differs from it): refused. \
                     Add the cluster's key there after checking its fingerprint.",
                    self.cfg.user, self.cfg.host, self.cfg.port, self.cfg.known_hosts
                )
            } else if m.contains("Permission denied") {
                format!(
                    "ssh {}@{}:{}: the key {} was refused: {m}",
                    self.cfg.user, self.cfg.host, self.cfg.port, self.cfg.identity_file
                )
            } else {
                format!(
                    "ssh {}@{}:{}: {m}",
                    self.cfg.user, self.cfg.host, self.cfg.port
                )
            })
        })
    }

    /// Closes the SSH master connection, if any.
    pub async fn close(&self) {
        if self.cfg.submit == Submit::Ssh {
            let mut c = self.ssh(&["-O", "exit"]);
            let _ = tokio::time::timeout(Duration::from_secs(5), c.output()).await;
        }
    }
}

fn parent(path: &str) -> &str {
    match path.rsplit_once('/') {
        Some(("", _)) => "/",
        Some((p, _)) => p,
        None => ".",
    }
}

async fn run(mut c: Command, stdin: Option<&[u8]>, what: &str) -> Result<String, SlurmError> {
    c.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let mut child = c
        .spawn()
        .map_err(|e| SlurmError(format!("cannot start {what}: {e}")))?;
    if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(bytes)
            .await
            .map_err(|e| SlurmError(format!("{what}: writing its input: {e}")))?;
        drop(pipe);
    }
    let out = tokio::time::timeout(CALL_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| SlurmError(format!("{what} did not answer within {CALL_TIMEOUT:?}")))?
        .map_err(|e| SlurmError(format!("{what}: {e}")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        let err = err.trim();
        Err(SlurmError(if err.is_empty() {
            format!("{what} exited with {}", out.status)
        } else {
            format!(
                "{what}: {}",
                err.lines().take(5).collect::<Vec<_>>().join("; ")
            )
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_for_the_shell() {
        assert_eq!(sh_quote("plain/path-1.txt"), "plain/path-1.txt");
        assert_eq!(sh_quote(""), "''");
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's $(x)"), "'it'\\''s $(x)'");
    }
}
