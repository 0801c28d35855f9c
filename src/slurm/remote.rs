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

use tokio::process::Command;

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
        self.exec(&program, args).await
    }

    /// A shell command line on the cluster (SSH: the login shell; local: `sh -c`).
    pub async fn shell(&self, line: &str) -> Result<String, SlurmError> {
        match self.cfg.submit {
            Submit::Local => self.exec("sh", &["-c".into(), line.into()]).await,
            Submit::Ssh => self.exec_ssh(line).await,
        }
    }

    async fn exec(&self, program: &str, args: &[String]) -> Result<String, SlurmError> {
        match self.cfg.submit {
            Submit::Local => {
                let mut c = Command::new(program);
                crate::child::no_inherit_async(&mut c).args(args);
                run(c, program).await
            }
            Submit::Ssh => {
                let line = std::iter::once(program.to_string())
                    .chain(args.iter().map(|a| sh_quote(a)))
                    .collect::<Vec<_>>()
                    .join(" ");
                self.exec_ssh(&line).await
            }
        }
    }

    async fn exec_ssh(&self, line: &str) -> Result<String, SlurmError> {
        let mut c = self.ssh(&[]);
        c.arg(line);
        run(c, "ssh").await.map_err(|e| {
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

    /// A command line run on the cluster (over SSH, or `sh -c` here), its streams unset.
    fn on_cluster(&self, line: &str) -> Command {
        match self.cfg.submit {
            Submit::Local => {
                let mut c = Command::new("sh");
                crate::child::no_inherit_async(&mut c).arg("-c").arg(line);
                c
            }
            Submit::Ssh => {
                let mut c = self.ssh(&[]);
                c.arg(line);
                c
            }
        }
    }

    /// Copies the file or folder `local` to `remote` (the same last name, its parents made)
    /// through one tar stream: nothing of it is held in memory. Symbolic links are followed,
    /// so a survey linked into the data directory arrives as files.
    pub async fn send(&self, local: &Path, remote: &str) -> Result<(), SlurmError> {
        let (Some(dir), Some(name)) = (local.parent(), local.file_name()) else {
            return Err(SlurmError(format!("{}: nothing to send", local.display())));
        };
        let mut tar = Command::new("tar");
        crate::child::no_inherit_async(&mut tar)
            .arg("-h")
            .arg("-C")
            .arg(dir)
            .arg("-cf")
            .arg("-")
            .arg(name);
        let there = parent(remote);
        let unpack = self.on_cluster(&format!(
            "mkdir -p {} && tar -C {} -xf -",
            sh_quote(there),
            sh_quote(there)
        ));
        pipe(
            tar,
            unpack,
            &format!("sending {} to {remote}", local.display()),
        )
        .await
    }

    /// Copies the file `local` to `remote` (made executable when `executable`), streamed,
    /// and in place only once whole.
    pub async fn send_file(
        &self,
        local: &Path,
        remote: &str,
        executable: bool,
    ) -> Result<(), SlurmError> {
        let mut cat = Command::new("cat");
        crate::child::no_inherit_async(&mut cat).arg(local);
        let part = format!("{remote}.part");
        let chmod = if executable {
            format!(" && chmod 755 {}", sh_quote(&part))
        } else {
            String::new()
        };
        let write = self.on_cluster(&format!(
            "mkdir -p {} && cat > {}{chmod} && mv {} {}",
            sh_quote(parent(remote)),
            sh_quote(&part),
            sh_quote(&part),
            sh_quote(remote)
        ));
        pipe(
            cat,
            write,
            &format!("sending {} to {remote}", local.display()),
        )
        .await
    }

    /// Copies what the folder `remote` holds into the folder `local`, but the names in
    /// `skip` (wherever they are in it).
    pub async fn fetch(&self, remote: &str, local: &Path, skip: &[&str]) -> Result<(), SlurmError> {
        let excludes: String = skip
            .iter()
            .map(|s| format!(" --exclude={}", sh_quote(s)))
            .collect();
        let pack = self.on_cluster(&format!("tar -C {}{excludes} -cf - .", sh_quote(remote)));
        std::fs::create_dir_all(local)
            .map_err(|e| SlurmError(format!("{}: {e}", local.display())))?;
        let mut tar = Command::new("tar");
        crate::child::no_inherit_async(&mut tar)
            .arg("--no-same-owner")
            .arg("-C")
            .arg(local)
            .arg("-xf")
            .arg("-");
        pipe(pack, tar, &format!("fetching {remote}")).await
    }

    /// The bytes of the file `remote` from `offset` on, at most `limit` of them (none when the
    /// file is not there yet).
    pub async fn read_from(
        &self,
        remote: &str,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<u8>, SlurmError> {
        let line = format!(
            "if [ -f {f} ]; then tail -c +{} {f} | head -c {limit}; fi",
            offset + 1,
            f = sh_quote(remote)
        );
        run_raw(self.on_cluster(&line), "reading the job's output").await
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

/// A copy that takes longer than this has failed (a survey over a slow link is staged once:
/// mount the data directory there instead, `shared_fs = true`).
const COPY_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

/// `from | to`, each one's failure named with `what`.
async fn pipe(mut from: Command, mut to: Command, what: &str) -> Result<(), SlurmError> {
    from.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut first = from
        .spawn()
        .map_err(|e| SlurmError(format!("{what}: cannot start: {e}")))?;
    let stream: Stdio = first
        .stdout
        .take()
        .ok_or_else(|| SlurmError(format!("{what}: no pipe")))?
        .try_into()
        .map_err(|e| SlurmError(format!("{what}: {e}")))?;
    to.stdin(stream)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let second = to
        .spawn()
        .map_err(|e| SlurmError(format!("{what}: cannot start: {e}")))?;
    let both = async { tokio::join!(first.wait_with_output(), second.wait_with_output()) };
    let (a, b) = tokio::time::timeout(COPY_TIMEOUT, both)
        .await
        .map_err(|_| SlurmError(format!("{what}: not done within {COPY_TIMEOUT:?}")))?;
    for out in [a, b] {
        let out = out.map_err(|e| SlurmError(format!("{what}: {e}")))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(SlurmError(format!(
                "{what}: {}",
                err.trim().lines().take(5).collect::<Vec<_>>().join("; ")
            )));
        }
    }
    Ok(())
}

async fn run(c: Command, what: &str) -> Result<String, SlurmError> {
    run_raw(c, what)
        .await
        .map(|out| String::from_utf8_lossy(&out).into_owned())
}

async fn run_raw(mut c: Command, what: &str) -> Result<Vec<u8>, SlurmError> {
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = c
        .spawn()
        .map_err(|e| SlurmError(format!("cannot start {what}: {e}")))?;
    let out = tokio::time::timeout(CALL_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| SlurmError(format!("{what} did not answer within {CALL_TIMEOUT:?}")))?
        .map_err(|e| SlurmError(format!("{what}: {e}")))?;
    if out.status.success() {
        Ok(out.stdout)
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
