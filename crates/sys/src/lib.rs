//! posthorn-sys: the operating-system operations that need care.
//!
//! User and group lookups, dropping privileges irrevocably, switching the effective ids for
//! a delivery and back, and taking ownership of descriptors inherited from master. This is
//! the only crate allowed to contain `unsafe` (one block, in [`take_inherited_fd`]).
//!
//! Error policy: every function returns a [`SysError`] naming the operation; nothing here
//! exits or panics.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Group, Uid, User};

/// Exit statuses of sysexits(3), which Sendmail-compatible programs and scripts expect.
/// Declared once here; every command uses these.
pub mod sysexits {
    /// Command line usage error.
    pub const EX_USAGE: i32 = 64;
    /// Input data error.
    pub const EX_DATAERR: i32 = 65;
    /// An input file does not exist or is not readable.
    pub const EX_NOINPUT: i32 = 66;
    /// Addressee or user unknown.
    pub const EX_NOUSER: i32 = 67;
    /// Service unavailable (also: not implemented).
    pub const EX_UNAVAILABLE: i32 = 69;
    /// Internal software error.
    pub const EX_SOFTWARE: i32 = 70;
    /// System error (fork, exec, a missing login name).
    pub const EX_OSERR: i32 = 71;
    /// An output file cannot be created.
    pub const EX_CANTCREAT: i32 = 73;
    /// Input/output error.
    pub const EX_IOERR: i32 = 74;
    /// Temporary failure: try again later.
    pub const EX_TEMPFAIL: i32 = 75;
    /// Permission denied.
    pub const EX_NOPERM: i32 = 77;
    /// Configuration error.
    pub const EX_CONFIG: i32 = 78;
}

/// A failed system operation.
#[derive(Debug, thiserror::Error)]
pub enum SysError {
    /// A named operation failed with an errno.
    #[error("{op}: {source}")]
    Errno {
        /// What was attempted.
        op: String,
        /// The error.
        source: nix::Error,
    },
    /// A user or group does not exist.
    #[error("unknown {kind}: {name}")]
    Unknown {
        /// "user" or "group".
        kind: &'static str,
        /// The name looked up.
        name: String,
    },
    /// A privilege change did not take effect.
    #[error("privilege change failed: {0}")]
    Verify(String),
}

fn errno(op: impl Into<String>) -> impl FnOnce(nix::Error) -> SysError {
    let op = op.into();
    move |source| SysError::Errno { op, source }
}

/// A Unix account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Home directory.
    pub home: PathBuf,
    /// Login shell.
    pub shell: PathBuf,
    /// GECOS field.
    pub gecos: String,
}

impl From<User> for Account {
    fn from(u: User) -> Self {
        Account {
            name: u.name,
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
            home: u.dir,
            shell: u.shell,
            gecos: u.gecos.to_string_lossy().into_owned(),
        }
    }
}

/// Looks up an account by name (`Ok(None)` if there is none).
pub fn user_by_name(name: &str) -> Result<Option<Account>, SysError> {
    Ok(User::from_name(name)
        .map_err(errno(format!("getpwnam {name}")))?
        .map(Account::from))
}

/// Looks up an account by uid.
pub fn user_by_uid(uid: u32) -> Result<Option<Account>, SysError> {
    Ok(User::from_uid(Uid::from_raw(uid))
        .map_err(errno(format!("getpwuid {uid}")))?
        .map(Account::from))
}

/// Looks up a group id by name.
pub fn group_by_name(name: &str) -> Result<Option<u32>, SysError> {
    Ok(Group::from_name(name)
        .map_err(errno(format!("getgrnam {name}")))?
        .map(|g| g.gid.as_raw()))
}

/// Whether the effective user is root.
pub fn is_root() -> bool {
    Uid::effective().is_root()
}

/// The real and effective user ids.
pub fn uids() -> (u32, u32) {
    (Uid::current().as_raw(), Uid::effective().as_raw())
}

/// Whether this process runs with raised privilege (setuid or setgid execution).
pub fn is_privileged_exec() -> bool {
    Uid::current() != Uid::effective() || Gid::current() != Gid::effective()
}

/// Changes root directory to `dir` (then `chdir("/")`).
pub fn chroot_to(dir: &Path) -> Result<(), SysError> {
    nix::unistd::chroot(dir).map_err(errno(format!("chroot {}", dir.display())))?;
    nix::unistd::chdir("/").map_err(errno("chdir /"))
}

/// Drops all privileges to `uid`/`gid` irrevocably (real, effective and saved ids, and the
/// supplementary groups), then verifies that root cannot be regained.
pub fn drop_privileges(uid: u32, gid: u32) -> Result<(), SysError> {
    let (u, g) = (Uid::from_raw(uid), Gid::from_raw(gid));
    if Uid::effective().is_root() {
        nix::unistd::setgroups(&[g]).map_err(errno("setgroups"))?;
    }
    nix::unistd::setresgid(g, g, g).map_err(errno(format!("setresgid {gid}")))?;
    nix::unistd::setresuid(u, u, u).map_err(errno(format!("setresuid {uid}")))?;
    if uid != 0 && nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
        return Err(SysError::Verify("root could be regained".into()));
    }
    if Uid::effective() != u || Gid::effective() != g {
        return Err(SysError::Verify(format!(
            "still uid {} gid {}",
            Uid::effective(),
            Gid::effective()
        )));
    }
    Ok(())
}

/// While alive, the process runs with effective ids `uid`/`gid` (and only `gid` as
/// supplementary group); dropping it returns to root. Used by local delivery, which must
/// write mailboxes as the recipient. Only meaningful when the real uid is root.
#[derive(Debug)]
pub struct EffectiveIds {
    active: bool,
}

impl EffectiveIds {
    /// Switches effective ids (a no-op returning an inactive guard when not root).
    pub fn switch(uid: u32, gid: u32) -> Result<EffectiveIds, SysError> {
        if !Uid::current().is_root() {
            return Ok(EffectiveIds { active: false });
        }
        let g = Gid::from_raw(gid);
        nix::unistd::setgroups(&[g]).map_err(errno("setgroups"))?;
        nix::unistd::setegid(g).map_err(errno(format!("setegid {gid}")))?;
        nix::unistd::seteuid(Uid::from_raw(uid)).map_err(errno(format!("seteuid {uid}")))?;
        Ok(EffectiveIds { active: true })
    }
}

impl Drop for EffectiveIds {
    fn drop(&mut self) {
        if self.active {
            // Going back to root cannot fail for a process whose real uid is root; if it
            // did, continuing would deliver the next message with the wrong ids.
            if nix::unistd::seteuid(Uid::from_raw(0)).is_err()
                || nix::unistd::setegid(Gid::from_raw(0)).is_err()
            {
                eprintln!("panic: EffectiveIds::drop: cannot return to root");
                std::process::abort();
            }
            let _ = nix::unistd::setgroups(&[Gid::from_raw(0)]);
        }
    }
}

/// Takes ownership of descriptor `fd`, inherited from the parent process (master passes
/// listeners and the status pipe this way, naming the numbers in the environment).
/// Fails if `fd` is not open, or is 0-2. Each number must be taken at most once.
pub fn take_inherited_fd(fd: RawFd) -> Result<OwnedFd, SysError> {
    if fd < 3 {
        return Err(SysError::Verify(format!(
            "refusing to take descriptor {fd}"
        )));
    }
    let flags = nix::fcntl::fcntl(unsafe_borrow(fd), nix::fcntl::FcntlArg::F_GETFD)
        .map_err(errno(format!("descriptor {fd}")))?;
    let _ = flags;
    #[allow(unsafe_code)]
    // SAFETY: `fd` is open (F_GETFD succeeded above), is not stdio, and was handed to this
    // process by master for exclusive use; callers take each number once at start-up, so no
    // other owner exists and it is closed exactly once, by the returned OwnedFd.
    let owned = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    set_cloexec(&owned, true)?;
    Ok(owned)
}

fn unsafe_borrow(fd: RawFd) -> std::os::fd::BorrowedFd<'static> {
    #[allow(unsafe_code)]
    // SAFETY: only used for the F_GETFD probe in take_inherited_fd; fcntl on a closed
    // number fails with EBADF, which is how we detect it. The borrow does not outlive the call.
    unsafe {
        std::os::fd::BorrowedFd::borrow_raw(fd)
    }
}

/// Maps a file read-only into memory (lookup tables built by postmap/postalias).
///
/// Contract: the file is never modified or truncated in place while mapped. posthorn's
/// tables satisfy it by construction — `build_hash` writes a new file and renames it over
/// the old one, so a mapped table keeps seeing its own (old) inode. Only another program
/// truncating a live table file could break the contract (the process would get SIGBUS, as
/// with any memory-mapped database).
pub fn map_readonly(file: &std::fs::File) -> std::io::Result<memmap2::Mmap> {
    #[allow(unsafe_code)]
    // SAFETY: memmap2 requires that the file not be changed while mapped; see the contract
    // above: table files are replaced by rename, never rewritten, and the caller keeps the
    // mapping only as long as it holds this file open.
    unsafe {
        memmap2::Mmap::map(file)
    }
}

/// Removes every environment variable except those named in `keep`. For setgid programs
/// (postdrop), which must not let the caller's environment steer them. Call it first thing
/// in `main`, before any thread exists.
pub fn clear_env(keep: &[&str]) {
    let names: Vec<std::ffi::OsString> = std::env::vars_os()
        .map(|(k, _)| k)
        .filter(|k| !keep.iter().any(|w| k == w))
        .collect();
    for k in names {
        #[allow(unsafe_code)]
        // SAFETY: called at program start, before any other thread exists (documented
        // contract of this function), so no other thread can read the environment meanwhile.
        unsafe {
            std::env::remove_var(&k);
        }
    }
}

/// Sets or clears close-on-exec on a descriptor (master clears it around a spawn so the
/// child inherits exactly the descriptors meant for it).
pub fn set_cloexec(fd: &impl std::os::fd::AsFd, on: bool) -> Result<(), SysError> {
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    let flags = if on {
        FdFlag::FD_CLOEXEC
    } else {
        FdFlag::empty()
    };
    fcntl(fd.as_fd(), FcntlArg::F_SETFD(flags)).map_err(errno(format!(
        "fcntl F_SETFD fd {}",
        fd.as_fd().as_raw_fd()
    )))?;
    Ok(())
}

/// Asks the kernel to send SIGTERM to this process when its parent (master) dies.
/// Call it after any change of credentials, which clears the setting.
pub fn exit_with_parent() -> Result<(), SysError> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
        .map_err(errno("prctl PR_SET_PDEATHSIG"))
}

/// Bytes available to unprivileged users on the file system that holds `path`.
pub fn free_space(path: &Path) -> Result<u64, SysError> {
    let s = nix::sys::statvfs::statvfs(path).map_err(errno("statvfs"))?;
    Ok(s.blocks_available().saturating_mul(s.fragment_size()))
}

/// Raises this process's open-file limit to the hard limit (a server holding many
/// connections needs one descriptor each); returns the new soft limit.
pub fn raise_nofile_limit() -> Result<u64, SysError> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(errno("getrlimit"))?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(errno("setrlimit"))?;
    }
    Ok(hard.max(soft))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        let root = user_by_uid(0).unwrap().unwrap();
        assert_eq!(root.name, "root");
        assert_eq!(user_by_name("root").unwrap().unwrap().uid, 0);
        assert!(user_by_name("no-such-user-xyz").unwrap().is_none());
        assert!(take_inherited_fd(1).is_err());
        assert!(take_inherited_fd(999).is_err());
    }
}
