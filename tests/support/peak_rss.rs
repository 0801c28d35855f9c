//! Runs a child to its end and reads its peak RSS from wait4: shared by the integration tests
//! (`tests/it/helpers.rs`) and the preprocessing benchmark, each including this file.

/// Runs `cmd` (stdout discarded, stderr into `log`): exit code (-1 when killed by a signal),
/// wall seconds and peak RSS in MiB.
#[allow(clippy::zombie_processes)] // reaped by wait4, which clippy does not see
pub fn run_peak_rss(cmd: &mut std::process::Command, log: &std::path::Path) -> (i32, f64, f64) {
    let started = std::time::Instant::now();
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).expect("the log file"))
        .spawn()
        .expect("spawns");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid out-parameter; wait4 reaps our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = started.elapsed().as_secs_f64();
    assert_eq!(waited, pid, "wait4");
    let code = match libc::WIFEXITED(status) {
        true => libc::WEXITSTATUS(status),
        false => -1,
    };
    (code, wall, usage.ru_maxrss as f64 / 1024.0)
}
