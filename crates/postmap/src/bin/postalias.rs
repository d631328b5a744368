//! postalias - posthorn alias database maintenance
//!
//! # Synopsis
//!
//! ```text
//! postalias [-finNoprsuUvw] [-c config_dir] [file_type:]file_name ...
//! postalias [-c config_dir] -q name [file_type:]file_name ...
//! postalias [-c config_dir] -q - [file_type:]file_name ...
//! postalias [-c config_dir] -s [file_type:]file_name ...
//! postalias [-c config_dir] -d name [file_type:]file_name ...
//! postalias [-c config_dir] -i [-r|-w] [file_type:]file_name ... < entries
//! ```
//!
//! # Description
//!
//! `postalias` is `postmap(1)` for aliases(5) files: it builds `file_name.db` from the
//! aliases file `file_name`, and queries, lists and edits such tables, with the same
//! options, atomic replacement, locking, permissions and exit statuses as postmap(1).
//! `newaliases` (and `sendmail -bi`) rebuild the files named in `alias_database` the same
//! way.
//!
//! Source format (aliases(5)): one entry per logical line, `name: value, value, ...`;
//! comment, blank and continuation lines as in postmap(1). The name ends at the first `:`
//! outside double quotes and may be quoted (`"the boss": ...`); it is folded to lower case.
//! Values are split at commas outside double quotes, so a quoted command or file name may
//! hold commas and blanks (`log: "|/usr/bin/logger -t mail, urgent"`); inside double quotes
//! a backslash escapes the next character. The stored value is the list joined with `, `,
//! re-quoted where a target needs it; local(8) splits it back into the same targets.
//!
//! Errors (fatal, with file and line; the old table stays in use): a line without `:`, an
//! empty or unquoted blank name, a name without targets, an unbalanced double quote.
//!
//! Differences from Postfix: as listed in postmap(1) (fatal syntax errors, duplicate
//! warnings with lines, source-order listing, always folded keys, no NUL convention, `-i`
//! and `-d` rebuild the `.db` and leave the source alone). In addition, posthorn does not
//! write Postfix's `@` sentinel or the `YP_*` entries, and `-s` quotes a name that aliases(5)
//! syntax would not read back (`"the boss":`), so its output can be fed to `postalias -i`.
//!
//! # Options
//!
//! As postmap(1). Output lines of `-s` and `-q -` are `name:<TAB>value`; `-q name` prints
//! the value only. `-i` reads aliases(5) lines from standard input.
//!
//! # Inputs
//!
//! Aliases files, standard input (`-i`, `-q -`, `-d -`), existing `.db` files, and
//! `config_dir/main.cf`.
//!
//! # Outputs
//!
//! `file_name.db` files; values and listings on standard output.
//!
//! # Security
//!
//! As postmap(1): a new `.db` file copies the group and other read bits of its source and,
//! when root builds it (without `-o`), the source's owner; a rebuilt one keeps the mode and
//! owner of the file it replaces. Commands and files named in aliases run with the
//! privileges local(8) chooses at delivery time, not postalias's.
//!
//! # Diagnostics
//!
//! `postalias: warning: ...` and one-line `postalias: fatal: ...` messages on standard
//! error; exit statuses as in postmap(1).
//!
//! # Environment
//!
//! - `MAIL_CONFIG`: configuration directory when `-c` is not given.
//! - `MAIL_VERBOSE`: as one `-v`.
//!
//! # Configuration parameters
//!
//! - `config_directory`: where `main.cf` lives (default `/etc/posthorn`).
//! - `default_database_type` (`hash`): the table type when an argument has no `type:`.
//! - `alias_database`, `alias_maps`: used by newaliases(1) and local(8), not by postalias.
//!
//! # Files
//!
//! - `/etc/aliases`: the usual source; `/etc/aliases.db`: its table.
//!
//! # Examples
//!
//! ```text
//! postalias /etc/aliases
//! postalias -q root /etc/aliases
//! postalias -s /etc/aliases > aliases.listing
//! ```
//!
//! # See also
//!
//! postmap(1), newaliases(1), aliases(5), local(8), posthorn.conf(5), sysexits(3).

fn main() {
    std::process::exit(posthorn_postmap::main(posthorn_postmap::Tool::Postalias));
}
