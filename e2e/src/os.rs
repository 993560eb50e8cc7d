//! The few libc calls the harness needs, wrapped in safe functions.
//!
//! This is the only module allowed to use `unsafe`; each block says why it is sound.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

/// Whether this process runs with effective user id 0.
pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid takes no arguments, cannot fail and touches no memory of ours.
    unsafe { libc::geteuid() == 0 }
}

/// User and group id of the OS user `name`, or `None` when there is no such user.
pub(crate) fn user_ids(name: &str) -> Option<(u32, u32)> {
    let name = CString::new(name).ok()?;
    let mut buffer_len = 4096;
    loop {
        let mut buffer: Vec<libc::c_char> = vec![0; buffer_len];
        // SAFETY: `passwd` is a plain C struct of integers and pointers; all-zero is a
        // valid value for it (null pointers), and getpwnam_r overwrites it on success.
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the duration of the call: `name` is a
        // NUL-terminated string, `entry` and `result` are live locals, and `buffer` has
        // exactly `buffer.len()` writable bytes. getpwnam_r (unlike getpwnam) keeps no
        // static state, so concurrent test threads may call it.
        let rc = unsafe {
            libc::getpwnam_r(
                name.as_ptr(),
                &mut entry,
                buffer.as_mut_ptr(),
                buffer.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buffer_len < 1 << 20 {
            buffer_len *= 4;
            continue;
        }
        if rc != 0 || result.is_null() {
            return None;
        }
        // Only the integer fields are read; the string fields point into `buffer`.
        return Some((entry.pw_uid, entry.pw_gid));
    }
}

/// Bytes available to unprivileged users on the file system holding `path`.
pub(crate) fn available_bytes(path: &Path) -> Option<u64> {
    let path = CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: `statvfs` is a plain C struct of integers; all-zero is a valid value, and
    // statvfs overwrites it on success.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `stats` is a live, writable local.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stats) } != 0 {
        return None;
    }
    // Both fields are u64 on 64-bit Linux but narrower on some 32-bit targets.
    #[allow(clippy::useless_conversion)]
    let (blocks, block_size) = (u64::from(stats.f_bavail), u64::from(stats.f_frsize));
    Some(blocks.saturating_mul(block_size))
}

/// Sends `signal` to process `pid`, or to its whole process group when `group` is set.
pub(crate) fn send_signal(pid: u32, signal: libc::c_int, group: bool) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pid out of range"))?;
    let target = if group { -pid } else { pid };
    // SAFETY: kill only takes integers. Callers only signal children they have not
    // reaped yet, so the pid (and the process group it leads) cannot have been reused.
    if unsafe { libc::kill(target, signal) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Makes the child receive SIGTERM when the thread that forked it exits
/// (`PR_SET_PDEATHSIG`), and refuse to start if this process is already gone.
pub(crate) fn die_with_parent(command: &mut Command) {
    let parent = std::process::id();
    // SAFETY: the hook runs in the forked child before exec, where only
    // async-signal-safe work is allowed: it makes two syscalls and builds `io::Error`s
    // from raw OS codes, which does not allocate. It runs after Command has switched
    // uid/gid, which matters because a credential change clears the death signal.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl; then nobody will ever
            // send the death signal, so do not start at all.
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}
