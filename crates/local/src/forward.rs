//! `~/.forward` files: `forward_path` expansion (Postfix local(8)'s `$home`, `$user`,
//! `${extension}`, ... with `${name?value}` / `${name:value}`), the syntax of `.forward` and
//! `:include:` files, the ownership and mode checks, and reading them with the recipient's
//! rights.
//!
//! Error policy: a `.forward` that is missing, unreadable because of permissions, or fails
//! the checks is skipped with a `warning:` (the next `forward_path` entry is tried, then the
//! mailbox); only I/O trouble that may pass (EIO, ENOMEM, ...) is returned as an error, and
//! the recipient is deferred.

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use posthorn_sys::Account;
use posthorn_tables::split_alias_targets;

use crate::privilege::as_account;

/// The largest `.forward` or `:include:` file read (the rest is ignored with a warning).
pub const MAX_FILE_SIZE: u64 = 1024 * 1024;

/// Postfix's default `forward_expansion_filter`: characters allowed in attribute values
/// substituted into `forward_path`; others become `_`.
const EXPANSION_FILTER: &str =
    "1234567890!@%-_=+:,./abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// The attributes local(8) substitutes into `forward_path`, `mailbox_command` and
/// `luser_relay` (Postfix's local(8) "EXTERNAL FILE DELIVERY" list).
#[derive(Clone, Copy, Debug, Default)]
pub struct ExpandAttrs<'a> {
    /// `$home`: the recipient's home directory.
    pub home: &'a str,
    /// `$user`: the recipient's login name.
    pub user: &'a str,
    /// `$shell`: the recipient's login shell.
    pub shell: &'a str,
    /// `$extension`: the address extension, without the delimiter ("" when none).
    pub extension: &'a str,
    /// `$recipient_delimiter`: the delimiter found in the address ("" when none).
    pub recipient_delimiter: &'a str,
    /// `$recipient`: the full recipient address.
    pub recipient: &'a str,
    /// `$domain`: the recipient's domain.
    pub domain: &'a str,
    /// `$local`: the whole local part (with the extension).
    pub local: &'a str,
}

impl ExpandAttrs<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        Some(match name {
            "home" => self.home,
            "user" => self.user,
            "shell" => self.shell,
            "extension" => self.extension,
            "recipient_delimiter" => self.recipient_delimiter,
            "recipient" => self.recipient,
            "domain" => self.domain,
            "local" => self.local,
            _ => return None,
        })
    }
}

/// Expands `$name`, `${name}`, `$(name)`, `${name?text}` (text when the attribute is not
/// empty), `${name:text}` (text when it is empty) and `$$` in `template`. With `filter`, the
/// characters of substituted values outside Postfix's default `forward_expansion_filter`
/// become `_`. An unknown attribute name or a syntax error is an error naming it.
pub fn local_expand(
    template: &str,
    attrs: &ExpandAttrs<'_>,
    filter: bool,
) -> Result<String, String> {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        rest = &rest[dollar + 1..];
        let open = rest.chars().next();
        match open {
            Some('$') => {
                out.push('$');
                rest = &rest[1..];
            }
            Some(c @ ('{' | '(')) => {
                let close = if c == '{' { '}' } else { ')' };
                let end = matching(rest, c, close)
                    .ok_or_else(|| format!("\"{template}\": missing '{close}'"))?;
                let inner = &rest[1..end];
                rest = &rest[end + 1..];
                let name_end = inner.find(['?', ':']).unwrap_or(inner.len());
                let name = inner[..name_end].trim();
                let value = attrs
                    .get(name)
                    .ok_or_else(|| format!("\"{template}\": unknown attribute \"{name}\""))?;
                match inner[name_end..].chars().next() {
                    None => push_value(&mut out, value, filter),
                    Some(op) => {
                        let text = &inner[name_end + 1..];
                        if (op == '?') != value.is_empty() {
                            out.push_str(&local_expand(text, attrs, filter)?);
                        }
                    }
                }
            }
            _ => {
                let len = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                if len == 0 {
                    return Err(format!("\"{template}\": '$' without a name"));
                }
                let name = &rest[..len];
                let value = attrs
                    .get(name)
                    .ok_or_else(|| format!("\"{template}\": unknown attribute \"{name}\""))?;
                push_value(&mut out, value, filter);
                rest = &rest[len..];
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The index of the bracket closing the one at `s[0]`.
fn matching(s: &str, open: char, close: char) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        if c == open {
            depth += 1;
        } else if c == close {
            depth -= 1;
            if depth == 0 {
                return Some(i);
            }
        }
    }
    None
}

fn push_value(out: &mut String, value: &str, filter: bool) {
    if filter {
        out.extend(
            value
                .chars()
                .map(|c| if EXPANSION_FILTER.contains(c) { c } else { '_' }),
        );
    } else {
        out.push_str(value);
    }
}

/// Expands each `forward_path` entry; entries that fail to expand or are not absolute are
/// skipped with a warning, duplicates are dropped.
pub fn forward_paths(templates: &[String], attrs: &ExpandAttrs<'_>) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for t in templates {
        match local_expand(t, attrs, true) {
            Ok(p) if p.starts_with('/') => {
                let p = PathBuf::from(p);
                if !out.contains(&p) {
                    out.push(p);
                }
            }
            Ok(p) if p.is_empty() => {}
            Ok(p) => log::warn!("forward_path: ignoring relative path \"{p}\""),
            Err(e) => log::warn!("forward_path: {e}"),
        }
    }
    out
}

/// The targets of a `.forward` or `:include:` file: lines starting with `#` and blank lines
/// are ignored; each line holds one or more comma-separated targets, double-quoted where
/// they contain commas (as in aliases(5)).
pub fn parse_forward(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .flat_map(split_alias_targets)
        .collect()
}

/// Checks an opened `.forward` file: a regular file, owned by the user (or by root, as
/// Postfix allows), and writable by nobody else (neither group nor world). The error is the
/// warning to log.
pub fn check_forward(path: &Path, meta: &Metadata, owner: u32) -> Result<(), String> {
    if !meta.is_file() {
        return Err(format!("file {} is not a regular file", path.display()));
    }
    if meta.uid() != owner && meta.uid() != 0 {
        return Err(format!(
            "file {} has bad owner uid {}",
            path.display(),
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "file {} is group or world writable",
            path.display()
        ));
    }
    Ok(())
}

/// A `.forward` file that passed the checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardFile {
    /// Where it was found.
    pub path: PathBuf,
    /// Its text.
    pub text: String,
}

/// Reads the first of `paths` that exists and passes [`check_forward`], with the user's
/// rights (when running as root). `Ok(None)`: none usable, deliver to the mailbox.
pub fn read_forward_as(user: &Account, paths: &[PathBuf]) -> Result<Option<ForwardFile>, String> {
    // Warnings are logged after the switch back: the log file may need reopening, which
    // the user's rights may not allow.
    let mut warnings = Vec::new();
    let found = as_account(user.uid, user.gid, || {
        for path in paths {
            // O_NONBLOCK: opening a FIFO planted as .forward must not hang; the regular-file
            // check then rejects it.
            let file = match File::options()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(path)
            {
                Ok(f) => f,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                    ) =>
                {
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                    warnings.push(format!("cannot open {}: {}", path.display(), strerror(&e)));
                    continue;
                }
                Err(e) => return Err(format!("cannot open {}: {}", path.display(), strerror(&e))),
            };
            let meta = file
                .metadata()
                .map_err(|e| format!("cannot stat {}: {}", path.display(), strerror(&e)))?;
            if let Err(w) = check_forward(path, &meta, user.uid) {
                warnings.push(w);
                continue;
            }
            let (text, cut) = read_limited(file)
                .map_err(|e| format!("cannot read {}: {}", path.display(), strerror(&e)))?;
            if cut {
                warnings.push(too_large(path));
            }
            return Ok(Some(ForwardFile {
                path: path.clone(),
                text,
            }));
        }
        Ok(None)
    });
    for w in warnings {
        log::warn!("{w}");
    }
    found?
}

/// The warning for a file cut at [`MAX_FILE_SIZE`].
pub(crate) fn too_large(path: &Path) -> String {
    format!(
        "{}: file is larger than {MAX_FILE_SIZE} bytes; ignoring the rest",
        path.display()
    )
}

/// Reads at most [`MAX_FILE_SIZE`] bytes as text (invalid UTF-8 replaced); the flag says
/// whether the file was longer.
pub(crate) fn read_limited(file: File) -> io::Result<(String, bool)> {
    let mut buf = Vec::new();
    file.take(MAX_FILE_SIZE + 1).read_to_end(&mut buf)?;
    let cut = buf.len() as u64 > MAX_FILE_SIZE;
    if cut {
        buf.truncate(MAX_FILE_SIZE as usize);
    }
    Ok((String::from_utf8_lossy(&buf).into_owned(), cut))
}

/// An I/O error as `strerror()` prints it, without Rust's "(os error N)".
pub(crate) fn strerror(e: &io::Error) -> String {
    let text = e.to_string();
    match e.raw_os_error() {
        Some(n) => text
            .strip_suffix(&format!(" (os error {n})"))
            .map(str::to_string)
            .unwrap_or(text),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn attrs<'a>(ext: &'a str, delim: &'a str) -> ExpandAttrs<'a> {
        ExpandAttrs {
            home: "/home/joe",
            user: "joe",
            shell: "/bin/sh",
            extension: ext,
            recipient_delimiter: delim,
            recipient: "joe+x@example.org",
            domain: "example.org",
            local: "joe+x",
        }
    }

    #[test]
    fn default_forward_path() {
        let templates: Vec<String> = [
            "$home/.forward${recipient_delimiter}${extension}",
            "$home/.forward",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            forward_paths(&templates, &attrs("list", "+")),
            vec![
                PathBuf::from("/home/joe/.forward+list"),
                PathBuf::from("/home/joe/.forward")
            ]
        );
        // No extension: both entries name the same file, tried once.
        assert_eq!(
            forward_paths(&templates, &attrs("", "")),
            vec![PathBuf::from("/home/joe/.forward")]
        );
    }

    #[test]
    fn conditional_forms_and_errors() {
        let a = attrs("ext", "+");
        assert_eq!(
            local_expand("${extension?/x/$user}", &a, true).unwrap(),
            "/x/joe"
        );
        assert_eq!(local_expand("${extension:none}", &a, true).unwrap(), "");
        assert_eq!(
            local_expand("${extension:none}", &attrs("", ""), true).unwrap(),
            "none"
        );
        assert_eq!(
            local_expand("$(user)@$domain $$5", &a, true).unwrap(),
            "joe@example.org $5"
        );
        assert_eq!(
            local_expand("$recipient", &a, true).unwrap(),
            "joe+x@example.org"
        );
        assert!(
            local_expand("$nosuch", &a, true)
                .unwrap_err()
                .contains("unknown attribute \"nosuch\"")
        );
        assert!(local_expand("${user", &a, true).is_err());
        assert!(local_expand("a$", &a, true).is_err());
        // Values are filtered; the template itself is not.
        let evil = ExpandAttrs {
            extension: "a b;`x`",
            ..a
        };
        assert_eq!(
            local_expand("$home/.f;$extension", &evil, true).unwrap(),
            "/home/joe/.f;a_b__x_"
        );
        assert_eq!(local_expand("$extension", &evil, false).unwrap(), "a b;`x`");
        let rel = vec!["relative/$user".to_string(), "${bad".to_string()];
        assert!(forward_paths(&rel, &a).is_empty());
    }

    #[test]
    fn forward_syntax() {
        let text = "# my forward\n\\joe, \"|/usr/bin/vacation joe\"\n\n  bob@example.com\n/tmp/copy\n:include:/etc/list\n";
        assert_eq!(
            parse_forward(text),
            vec![
                "\\joe",
                "|/usr/bin/vacation joe",
                "bob@example.com",
                "/tmp/copy",
                ":include:/etc/list"
            ]
        );
        assert!(parse_forward("# nothing\n\n").is_empty());
    }

    #[test]
    fn checks_and_reading() {
        let dir = tempfile::tempdir().unwrap();
        let me = posthorn_sys::user_by_uid(posthorn_sys::uids().1)
            .unwrap()
            .unwrap();
        let good = dir.path().join(".forward+ext");
        std::fs::write(&good, "a@b\n").unwrap();
        std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o644)).unwrap();
        let meta = std::fs::metadata(&good).unwrap();
        assert!(check_forward(&good, &meta, me.uid).is_ok());
        assert!(check_forward(&good, &meta, me.uid + 1).is_ok() == (me.uid == 0));

        let bad = dir.path().join(".forward");
        std::fs::write(&bad, "c@d\n").unwrap();
        std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o664)).unwrap();
        let meta = std::fs::metadata(&bad).unwrap();
        assert!(
            check_forward(&bad, &meta, me.uid)
                .unwrap_err()
                .contains("group or world writable")
        );
        assert!(
            check_forward(dir.path(), &std::fs::metadata(dir.path()).unwrap(), me.uid)
                .unwrap_err()
                .contains("not a regular file")
        );

        let missing = dir.path().join("nope");
        // The writable one is skipped, the missing one too; the good one is found.
        let got = read_forward_as(&me, &[missing.clone(), bad.clone(), good.clone()])
            .unwrap()
            .unwrap();
        assert_eq!(
            got,
            ForwardFile {
                path: good.clone(),
                text: "a@b\n".into()
            }
        );
        assert_eq!(read_forward_as(&me, &[missing, bad]).unwrap(), None);
    }
}
