//! `mailq` / `sendmail -bp`: runs `postqueue -p` in place of this process, as Postfix's
//! sendmail does. The listing (and its format, in posthorn-postqueue) comes from the
//! `showq` daemon, so any user can list the queue without reading it.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `command_directory/postqueue`; when it is missing, the `postqueue` next to this program
/// (a build tree), as for postdrop.
pub fn postqueue_program(command_directory: &Path) -> PathBuf {
    let p = command_directory.join("postqueue");
    if p.is_file() {
        return p;
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("postqueue")))
        .filter(|q| q.is_file())
        .unwrap_or(p)
}

/// The arguments of the `postqueue` run: `-c config_dir` when the user chose one, `-p`,
/// and one `-v` per `-v` given to sendmail.
pub fn postqueue_args(config_dir: Option<&Path>, verbose: u32) -> Vec<OsString> {
    let mut v = Vec::new();
    if let Some(dir) = config_dir {
        v.push("-c".into());
        v.push(dir.as_os_str().to_owned());
    }
    v.push("-p".into());
    for _ in 0..verbose {
        v.push("-v".into());
    }
    v
}

/// Replaces this process with `program args`; returns only the error when that fails.
pub fn exec_postqueue(program: &Path, args: &[OsString]) -> std::io::Error {
    Command::new(program).arg0("postqueue").args(args).exec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() {
        assert_eq!(postqueue_args(None, 0), ["-p"]);
        assert_eq!(
            postqueue_args(Some(Path::new("/etc/x")), 2),
            ["-c", "/etc/x", "-p", "-v", "-v"]
        );
    }

    #[test]
    fn program_falls_back_to_the_build_tree() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("postqueue"), b"").unwrap();
        assert_eq!(postqueue_program(tmp.path()), tmp.path().join("postqueue"));
        let empty = tempfile::tempdir().unwrap();
        let p = postqueue_program(empty.path());
        assert!(p.ends_with("postqueue"), "{}", p.display());
    }
}
