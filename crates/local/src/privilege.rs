//! Whose rights each delivery uses, and how they are taken.
//!
//! - Files (mailboxes, `/file` targets, `.forward` and `:include:` reads) are opened with the
//!   *effective* ids switched to the account ([`as_account`], `posthorn_sys::EffectiveIds`)
//!   and switched back to root afterwards. Run as an ordinary user (the unprivileged mode),
//!   nothing is switched: everything happens with that user's rights.
//! - Commands must not inherit a real uid of root (a shell would switch back to it, and any
//!   program could): when root, posthorn runs the command through its own executable in a
//!   small helper mode ([`exec_helper_if_requested`]), which drops *all* ids to the account
//!   irrevocably and then executes the shell. The helper is selected by the environment
//!   variable [`RUN_AS_ENV`] (`uid:gid:shell`), which it removes before running the shell.
//!   Starting a posthorn binary with that variable set can only lower its privileges.
//! - Nothing is ever delivered to a command or file as root: uid 0 is replaced by
//!   `default_privs` (in routing), as in Postfix.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use posthorn_sys::EffectiveIds;

/// Environment variable that makes a posthorn binary act as the run-as helper.
pub const RUN_AS_ENV: &str = "POSTHORN_RUN_AS";

/// The helper executable used when root: this very program.
pub const SELF_EXE: &str = "/proc/self/exe";

/// Runs `f` with the effective uid/gid of the account (when root; else as is).
pub fn as_account<T>(uid: u32, gid: u32, f: impl FnOnce() -> T) -> Result<T, String> {
    let guard = EffectiveIds::switch(uid, gid)
        .map_err(|e| format!("cannot switch to uid {uid} gid {gid}: {e}"))?;
    let out = f();
    drop(guard);
    Ok(out)
}

/// How to start the shell for a command delivery as `uid`/`gid`: the program to run with
/// `-c COMMAND`, and extra environment entries. When root, that is the helper (`helper`,
/// normally [`SELF_EXE`]) with [`RUN_AS_ENV`]; otherwise the shell itself.
pub fn command_launcher(
    shell: &str,
    helper: &str,
    uid: u32,
    gid: u32,
) -> (PathBuf, Vec<(String, String)>) {
    if posthorn_sys::is_root() {
        (
            PathBuf::from(helper),
            vec![(RUN_AS_ENV.to_string(), format!("{uid}:{gid}:{shell}"))],
        )
    } else {
        (PathBuf::from(shell), Vec::new())
    }
}

/// Parses a [`RUN_AS_ENV`] value: `uid:gid:shell`, uid not 0, shell absolute.
pub fn parse_run_as(value: &str) -> Result<(u32, u32, PathBuf), String> {
    let mut it = value.splitn(3, ':');
    let (Some(u), Some(g), Some(shell)) = (it.next(), it.next(), it.next()) else {
        return Err(format!("bad {RUN_AS_ENV} value \"{value}\""));
    };
    let uid: u32 = u.parse().map_err(|_| format!("bad uid \"{u}\""))?;
    let gid: u32 = g.parse().map_err(|_| format!("bad gid \"{g}\""))?;
    if uid == 0 {
        return Err("refusing to run a command as root".to_string());
    }
    if !shell.starts_with('/') {
        return Err(format!("shell \"{shell}\" is not an absolute path"));
    }
    Ok((uid, gid, PathBuf::from(shell)))
}

/// Call first thing in `main`: when [`RUN_AS_ENV`] is set, become the run-as helper: drop
/// every id to the given account, then execute the shell with this program's arguments
/// (`-c COMMAND`). Never returns in that case; exits with 75 (EX_TEMPFAIL, so the delivery is
/// deferred) when anything fails.
pub fn exec_helper_if_requested() {
    let Some(value) = std::env::var_os(RUN_AS_ENV) else {
        return;
    };
    let fail = |msg: String| -> ! {
        eprintln!("posthorn run-as helper: {msg}");
        std::process::exit(75);
    };
    let value = value
        .into_string()
        .unwrap_or_else(|_| fail(format!("{RUN_AS_ENV} is not UTF-8")));
    let (uid, gid, shell) = parse_run_as(&value).unwrap_or_else(|e| fail(e));
    if let Err(e) = posthorn_sys::drop_privileges(uid, gid) {
        fail(e.to_string());
    }
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let err = Command::new(&shell)
        .args(args)
        .env_remove(RUN_AS_ENV)
        .exec();
    fail(format!("cannot execute {}: {err}", shell.display()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_as_values() {
        assert_eq!(
            parse_run_as("65534:65534:/bin/sh").unwrap(),
            (65534, 65534, PathBuf::from("/bin/sh"))
        );
        assert!(parse_run_as("0:0:/bin/sh").unwrap_err().contains("root"));
        assert!(parse_run_as("1:1:sh").is_err());
        assert!(parse_run_as("x:1:/bin/sh").is_err());
        assert!(parse_run_as("1:1").is_err());
    }

    #[test]
    fn launcher_depends_on_root() {
        let (prog, env) = command_launcher("/bin/sh", SELF_EXE, 1000, 1000);
        if posthorn_sys::is_root() {
            assert_eq!(prog, PathBuf::from(SELF_EXE));
            assert_eq!(
                env,
                vec![(RUN_AS_ENV.to_string(), "1000:1000:/bin/sh".to_string())]
            );
        } else {
            assert_eq!(prog, PathBuf::from("/bin/sh"));
            assert!(env.is_empty());
        }
    }

    #[test]
    fn as_account_as_self() {
        let (_, euid) = posthorn_sys::uids();
        let me = posthorn_sys::user_by_uid(euid).unwrap().unwrap();
        assert_eq!(as_account(me.uid, me.gid, || 5).unwrap(), 5);
    }
}
