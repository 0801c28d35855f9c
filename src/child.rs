//! Child processes inherit their standard streams and nothing else.
//!
//! C libraries open files without close-on-exec. HDF5 opens with `open(2)` and takes a
//! `flock` on the file; a child forked while such a file is open (an SSH master connection
//! that lives as long as the server, a script, `sbatch`) keeps that lock after this process
//! has closed the file, and the next job that opens it fails with "unable to lock file,
//! errno = 11" for as long as the child lives. Every child this process starts goes through
//! [`no_inherit`].

use std::os::unix::process::CommandExt;

/// Marks every descriptor above the standard streams close-on-exec in the child, between fork
/// and exec (descriptors the command was given as stdin, stdout or stderr are 0–2 by then).
pub fn no_inherit(command: &mut std::process::Command) -> &mut std::process::Command {
    // SAFETY: only async-signal-safe system calls (close_range, fcntl) run between fork and
    // exec, and they touch no memory.
    unsafe {
        command.pre_exec(|| {
            cloexec_above_stdio();
            Ok(())
        })
    }
}

/// [`no_inherit`] for a tokio command.
pub fn no_inherit_async(command: &mut tokio::process::Command) -> &mut tokio::process::Command {
    no_inherit(command.as_std_mut());
    command
}

/// Async-signal-safe. `close_range` with `CLOSE_RANGE_CLOEXEC` (Linux 5.11) in one call; on an
/// older kernel one `fcntl` per descriptor number up to the soft limit's usual 1,024… 65,536.
fn cloexec_above_stdio() {
    // SAFETY: plain system calls on descriptor numbers; an unused number answers EBADF.
    unsafe {
        if libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        ) == 0
        {
            return;
        }
        for fd in 3..65_536 {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// A descriptor opened without close-on-exec (as C libraries open them) reaches a plain
    /// child, and does not reach one started through `no_inherit`.
    #[test]
    fn a_descriptor_without_cloexec_does_not_reach_the_child() {
        let file = std::fs::File::open("/dev/null").unwrap();
        let fd = file.as_raw_fd();
        // SAFETY: clears the flag std set, as a C library's open(2) would have left it.
        assert_eq!(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) }, 0);
        let probe = format!("test -e /proc/self/fd/{fd}");
        let plain = std::process::Command::new("sh")
            .args(["-c", &probe])
            .status()
            .unwrap();
        assert!(
            plain.success(),
            "the inherited descriptor {fd} should be visible"
        );
        let guarded = no_inherit(std::process::Command::new("sh").args(["-c", &probe]))
            .status()
            .unwrap();
        assert!(!guarded.success(), "descriptor {fd} leaked into the child");
        // A program that cannot be started is still an error at spawn, not an exit code.
        let missing = no_inherit(&mut std::process::Command::new("/nonexistent/mljm-x")).status();
        assert!(missing.is_err());
    }
}
