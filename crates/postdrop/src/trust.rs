//! What postdrop takes from its (untrusted) caller's environment: nothing but the
//! configuration directory, and that only under the `alternate_config_directories` rule.
//!
//! postdrop never consults the environment after [`CallerEnv::capture`], runs no other
//! program, and ignores all variables but `MAIL_CONFIG`. It cannot *clear* the inherited
//! environment: `std::env::remove_var` is `unsafe` in Rust 2024 and `unsafe` lives only in
//! posthorn-sys (TODO: call `posthorn_sys::clear_env()` keeping `TZ` once it exists). As a
//! set-group-ID program it runs with the kernel's AT_SECURE flag, so the C library already
//! ignores `LD_PRELOAD`, `MALLOC_*` and the like.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The default configuration directory, the one a privileged postdrop always trusts.
pub fn default_config_dir() -> PathBuf {
    posthorn_config::Config::defaults().get_path("config_directory")
}

/// The environment variables postdrop uses, read once at start-up.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallerEnv {
    /// `MAIL_CONFIG`, when set and not empty.
    pub mail_config: Option<OsString>,
}

impl CallerEnv {
    /// Reads the variables postdrop uses; the rest of the environment is never looked at.
    pub fn capture() -> CallerEnv {
        CallerEnv {
            mail_config: std::env::var_os("MAIL_CONFIG").filter(|v| !v.is_empty()),
        }
    }
}

/// The privileges this process runs with, as far as the configuration rule cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    /// Set-group-ID or set-user-ID: the effective IDs differ from the real ones.
    pub privileged: bool,
    /// The real user is root (who could change any configuration anyway).
    pub real_root: bool,
}

impl Caller {
    /// The current process.
    pub fn current() -> Caller {
        use nix::unistd::{getegid, geteuid, getgid, getuid};
        Caller {
            privileged: getegid() != getgid() || geteuid() != getuid(),
            real_root: getuid().is_root(),
        }
    }

    /// Whether a configuration directory other than the default needs the default main.cf's
    /// approval. An unprivileged postdrop (tests, an unprivileged instance) has nothing to
    /// protect and honours any directory.
    pub fn must_check(self) -> bool {
        self.privileged && !self.real_root
    }
}

/// A configuration directory the caller may not use.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TrustError {
    /// The directory is not listed in the default main.cf.
    #[error("untrusted config directory {}: not listed in alternate_config_directories of {}", dir.display(), main_cf.display())]
    NotListed {
        /// The requested directory.
        dir: PathBuf,
        /// The default main.cf that was consulted.
        main_cf: PathBuf,
    },
    /// The default main.cf could not be read, so nothing beyond the default is trusted.
    #[error("untrusted config directory {}: cannot read the default configuration: {reason}", dir.display())]
    NoDefault {
        /// The requested directory.
        dir: PathBuf,
        /// The default main.cf.
        main_cf: PathBuf,
        /// Why it could not be read.
        reason: String,
    },
}

/// Picks the configuration directory: `-c dir`, else `MAIL_CONFIG`, else `default_dir`.
/// When `caller` [must check](Caller::must_check), a directory other than `default_dir` is
/// accepted only when `alternates` (the default main.cf's `alternate_config_directories`,
/// read only when needed) lists it. Paths are compared component by component, without
/// following symbolic links, as Postfix compares the strings.
pub fn choose_config_dir(
    option: Option<&Path>,
    env: &CallerEnv,
    caller: Caller,
    default_dir: &Path,
    alternates: impl FnOnce() -> Result<Vec<String>, String>,
) -> Result<PathBuf, TrustError> {
    let requested = option
        .map(Path::to_path_buf)
        .or_else(|| env.mail_config.as_ref().map(PathBuf::from));
    let Some(dir) = requested else {
        return Ok(default_dir.to_path_buf());
    };
    if dir == default_dir || !caller.must_check() {
        return Ok(dir);
    }
    let main_cf = default_dir.join("main.cf");
    match alternates() {
        Ok(list) if list.iter().any(|a| Path::new(a) == dir) => Ok(dir),
        Ok(_) => Err(TrustError::NotListed { dir, main_cf }),
        Err(reason) => Err(TrustError::NoDefault {
            dir,
            main_cf,
            reason,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETGID: Caller = Caller {
        privileged: true,
        real_root: false,
    };
    const PLAIN: Caller = Caller {
        privileged: false,
        real_root: false,
    };
    const ROOT_SETGID: Caller = Caller {
        privileged: true,
        real_root: true,
    };

    fn listed() -> Result<Vec<String>, String> {
        Ok(vec!["/etc/posthorn-out".into(), "/srv/mta/conf/".into()])
    }

    fn never() -> Result<Vec<String>, String> {
        panic!("the default main.cf must not be read here")
    }

    #[test]
    fn default_when_nothing_requested() {
        let d = Path::new("/etc/posthorn");
        assert_eq!(
            choose_config_dir(None, &CallerEnv::default(), SETGID, d, never).unwrap(),
            d
        );
        let same = Path::new("/etc/posthorn/");
        assert_eq!(
            choose_config_dir(Some(same), &CallerEnv::default(), SETGID, d, never).unwrap(),
            same
        );
    }

    #[test]
    fn privileged_caller_needs_a_listed_directory() {
        let d = Path::new("/etc/posthorn");
        let ok = choose_config_dir(
            Some(Path::new("/srv/mta/conf")),
            &CallerEnv::default(),
            SETGID,
            d,
            listed,
        )
        .unwrap();
        assert_eq!(ok, Path::new("/srv/mta/conf"));
        let env = CallerEnv {
            mail_config: Some("/etc/posthorn-out".into()),
        };
        assert!(choose_config_dir(None, &env, SETGID, d, listed).is_ok());
        let e = choose_config_dir(
            Some(Path::new("/home/mallory/cf")),
            &CallerEnv::default(),
            SETGID,
            d,
            listed,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "untrusted config directory /home/mallory/cf: not listed in alternate_config_directories of /etc/posthorn/main.cf"
        );
        let env = CallerEnv {
            mail_config: Some("/tmp/x".into()),
        };
        assert!(matches!(
            choose_config_dir(None, &env, SETGID, d, listed),
            Err(TrustError::NotListed { .. })
        ));
        let e = choose_config_dir(
            Some(Path::new("/tmp/x")),
            &CallerEnv::default(),
            SETGID,
            d,
            || Err("gone".into()),
        )
        .unwrap_err();
        assert!(matches!(e, TrustError::NoDefault { .. }));
    }

    #[test]
    fn option_wins_over_environment() {
        let d = Path::new("/etc/posthorn");
        let env = CallerEnv {
            mail_config: Some("/tmp/from-env".into()),
        };
        let got =
            choose_config_dir(Some(Path::new("/srv/mta/conf")), &env, SETGID, d, listed).unwrap();
        assert_eq!(got, Path::new("/srv/mta/conf"));
    }

    #[test]
    fn unprivileged_or_root_callers_choose_freely() {
        let d = Path::new("/etc/posthorn");
        let x = Path::new("/home/u/instance");
        assert_eq!(
            choose_config_dir(Some(x), &CallerEnv::default(), PLAIN, d, never).unwrap(),
            x
        );
        assert_eq!(
            choose_config_dir(Some(x), &CallerEnv::default(), ROOT_SETGID, d, never).unwrap(),
            x
        );
        assert!(!PLAIN.must_check() && !ROOT_SETGID.must_check() && SETGID.must_check());
    }
}
