//! Which configuration directory a set-group-ID program (postdrop, postqueue) may use: the
//! default one, or another only when the default main.cf lists it in
//! `alternate_config_directories` — Postfix's rule. Unprivileged runs and root choose freely.

use std::path::{Path, PathBuf};

use crate::Config;

/// The privileges this process runs with, as far as these rules care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    /// Set-group-ID or set-user-ID: the effective IDs differ from the real ones.
    pub privileged: bool,
    /// The real user ID.
    pub uid: u32,
}

impl Caller {
    /// The current process.
    pub fn current() -> Caller {
        use nix::unistd::{getegid, geteuid, getgid, getuid};
        Caller {
            privileged: getegid() != getgid() || geteuid() != getuid(),
            uid: getuid().as_raw(),
        }
    }

    /// Whether a configuration directory other than the default needs the default main.cf's
    /// approval: only for a privileged process run by someone other than root. An
    /// unprivileged postqueue (a build tree, the tests, an instance run by one user) has
    /// nothing to protect and honours any directory.
    pub fn must_check(self) -> bool {
        self.privileged && self.uid != 0
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
    #[error("untrusted config directory {}: cannot read {}: {reason}", dir.display(), main_cf.display())]
    NoDefault {
        /// The requested directory.
        dir: PathBuf,
        /// The default main.cf.
        main_cf: PathBuf,
        /// Why it could not be read.
        reason: String,
    },
}

/// Picks the configuration directory: `requested` (`-c`, else `MAIL_CONFIG`), else
/// `default_dir`. When `caller` [must check](Caller::must_check), another directory is
/// accepted only when `alternates` (the default main.cf's `alternate_config_directories`,
/// read only when needed) lists it, compared component by component as postdrop does.
pub fn choose_config_dir(
    requested: Option<PathBuf>,
    caller: Caller,
    default_dir: &Path,
    alternates: impl FnOnce() -> Result<Vec<String>, String>,
) -> Result<PathBuf, TrustError> {
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

/// The directory a caller asks for: the `-c` option wins over `MAIL_CONFIG`; an empty
/// `MAIL_CONFIG` counts as unset.
pub fn requested_dir(
    option: Option<PathBuf>,
    mail_config: Option<std::ffi::OsString>,
) -> Option<PathBuf> {
    option.or_else(|| mail_config.filter(|v| !v.is_empty()).map(PathBuf::from))
}

/// The configuration directory for a command without raised privileges (postsuper,
/// postcat, postconf...): `-c`, else `MAIL_CONFIG`, else the default.
pub fn command_config_dir(option: Option<PathBuf>) -> PathBuf {
    requested_dir(option, std::env::var_os("MAIL_CONFIG"))
        .unwrap_or_else(|| Config::defaults().get_path("config_directory"))
}

/// The configuration directory for a set-group-ID program: `-c` (`option`), else
/// `MAIL_CONFIG`, under the rule of [`choose_config_dir`], checked against the default
/// configuration directory's main.cf.
pub fn trusted_config_dir(
    option: Option<PathBuf>,
    mail_config: Option<std::ffi::OsString>,
    caller: Caller,
) -> Result<PathBuf, TrustError> {
    let requested = requested_dir(option, mail_config);
    let default_dir = Config::defaults().get_path("config_directory");
    let alternates = || {
        Config::load(&default_dir)
            .map(|c| c.get_list("alternate_config_directories"))
            .map_err(|e| e.to_string())
    };
    choose_config_dir(requested, caller, &default_dir, alternates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_wins_over_environment() {
        let env = Some(std::ffi::OsString::from("/tmp/from-env"));
        assert_eq!(
            requested_dir(Some("/srv/cf".into()), env.clone()),
            Some(PathBuf::from("/srv/cf"))
        );
        assert_eq!(
            requested_dir(None, env),
            Some(PathBuf::from("/tmp/from-env"))
        );
        assert_eq!(requested_dir(None, Some("".into())), None);
        assert_eq!(requested_dir(None, None), None);
    }

    const SETGID: Caller = Caller {
        privileged: true,
        uid: 1000,
    };
    const PLAIN: Caller = Caller {
        privileged: false,
        uid: 1000,
    };
    const ROOT: Caller = Caller {
        privileged: true,
        uid: 0,
    };

    fn never() -> Result<Vec<String>, String> {
        panic!("the default main.cf must not be read here")
    }

    #[test]
    fn configuration_directory_rule() {
        let d = Path::new("/etc/posthorn");
        assert_eq!(choose_config_dir(None, SETGID, d, never).unwrap(), d);
        let other = PathBuf::from("/home/mallory/cf");
        assert_eq!(
            choose_config_dir(Some(other.clone()), PLAIN, d, never).unwrap(),
            other
        );
        assert_eq!(
            choose_config_dir(Some(other.clone()), ROOT, d, never).unwrap(),
            other
        );
        let e = choose_config_dir(Some(other.clone()), SETGID, d, || Ok(vec![])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "untrusted config directory /home/mallory/cf: not listed in alternate_config_directories of /etc/posthorn/main.cf"
        );
        let listed = || Ok(vec!["/srv/cf/".to_string()]);
        assert_eq!(
            choose_config_dir(Some("/srv/cf".into()), SETGID, d, listed).unwrap(),
            Path::new("/srv/cf")
        );
        let e = choose_config_dir(Some(other), SETGID, d, || Err("gone".into())).unwrap_err();
        assert!(matches!(e, TrustError::NoDefault { .. }), "{e}");
    }
}
