//! postmap - posthorn lookup table management
//!
//! # Synopsis
//!
//! ```text
//! postmap [-finNoprsuUvw] [-c config_dir] [file_type:]file_name ...
//! postmap [-c config_dir] -q key [file_type:]file_name ...
//! postmap [-c config_dir] -q - [file_type:]file_name ...
//! postmap [-c config_dir] -s [file_type:]file_name ...
//! postmap [-c config_dir] -d key [file_type:]file_name ...
//! postmap [-c config_dir] -i [-r|-w] [file_type:]file_name ... < entries
//! ```
//!
//! # Description
//!
//! `postmap` builds, queries, lists and edits posthorn lookup tables. By default it reads
//! the source file `file_name` and writes the table `file_name.db`. A `.db` file is never
//! changed in place: the new table is written into a private directory beside it (mode
//! 0700, named `.file_name.db.XXXXXX.new`), fsync'd, given its final mode and owner and
//! renamed over the old one, and the directory is fsync'd. A daemon reading the table sees
//! the old or the new table, never a partial one, and notices the new file at its next
//! lookup without a restart. Writers of one table (`postmap`, `postmap -i`, `postmap -d`)
//! take turns with an exclusive flock(2) on the current `.db` file.
//!
//! Source format: one entry per logical line, `key whitespace value`. Empty lines,
//! whitespace-only lines and lines whose first non-blank character is `#` are ignored. A
//! line that starts with whitespace continues the previous logical line (its leading
//! whitespace is kept, the newline dropped). Keys and values are trimmed. Keys are folded to
//! lower case when the table is built and when it is queried. Text must be UTF-8.
//!
//! Differences from Postfix, on purpose:
//! - A syntax error (a key without a value, a continuation line with nothing before it,
//!   invalid UTF-8) is fatal and names the file and line; the old table stays in use.
//!   Postfix warns and skips the line. Since the table is rebuilt atomically, refusing the
//!   whole file costs nothing and a typo cannot silently drop an entry.
//! - Duplicate keys are reported with the source line (`file, line N: duplicate entry:
//!   "key"`); the first value wins unless `-r` or `-w` is given.
//! - `-s` lists entries in source order (then entries added by `-i`), not hash order.
//! - Keys are always folded to lower case; `-f` is accepted with a warning and ignored.
//! - posthorn's format has no NUL-termination convention (keys and values are stored with
//!   their lengths): `-N` and `-n` are accepted and ignored.
//! - `-i` and `-d` rebuild the table from the current `.db` contents plus the changes and
//!   replace it atomically, so on a large table they take as long as a build. As in Postfix, they never edit the source text file: the next
//!   `postmap file_name` rebuilds the table from the source and drops those changes.
//! - Quoted keys with whitespace (Postfix 3.2) are not supported.
//!
//! Table types: `hash` is the only type `postmap` can create or change. Queries (`-q`) also
//! work on `inline:{ key=value, ... }` and `static:value`, and listing (`-s`) on
//! `inline:`. Without a `file_type:` prefix the type is `default_database_type` (`hash`).
//!
//! # Options
//!
//! - `-c config_dir`: read `main.cf` in `config_dir` instead of `MAIL_CONFIG` or
//!   `/etc/posthorn`. The file must exist (it may be empty).
//! - `-d key`: remove `key` from each table; exit 0 if it was found in at least one. With
//!   `-d -`, keys are read from standard input, one per line. A table without the key is
//!   not rewritten.
//! - `-f`: ignored with a warning (posthorn always folds keys to lower case).
//! - `-i`: incremental mode: read entries in source format from standard input (named
//!   `stdin` in messages) and add them to each table, creating it if needed.
//! - `-N`, `-n`: accepted and ignored (no NUL convention).
//! - `-o`: when run by root, leave a new `.db` file owned by root rather than by the owner
//!   of the source file.
//! - `-p`: give a new `.db` file mode 0644 (less the umask) instead of copying the group and
//!   other read permission of the source file.
//! - `-q key`: print the first value found for `key` in the tables, in command-line order;
//!   exit 0 if found, 1 if not. This is one exact lookup, not the address search of the
//!   daemons (`user+ext@domain`, `user@domain`, `user`, `@domain`). With `-q -`, keys are
//!   read from standard input one per line and `key<TAB>value` is printed for each key
//!   found; exit 0 if at least one was found.
//! - `-r`: when a key is already present (earlier in the input, or in the table for `-i`),
//!   replace its value quietly.
//! - `-s`: print `key<TAB>value` for every entry of each table.
//! - `-u`: ignored with a warning (tables are always UTF-8); `-U` is accepted.
//! - `-v`: verbose: report entry counts and timings on standard error.
//! - `-w`: when a key is already present, keep the old value quietly.
//!
//! `-b`, `-h`, `-m` (message query modes) and `-F` (base64 values) are not implemented;
//! they exit 69.
//!
//! # Inputs
//!
//! Source files, standard input (`-i`, `-q -`, `-d -`), existing `.db` files, and
//! `config_dir/main.cf`.
//!
//! # Outputs
//!
//! `file_name.db` files; values and listings on standard output.
//!
//! # Security
//!
//! `postmap` needs no privilege beyond write access to the directory of the table and to
//! an existing `.db` file. A new `.db` file gets mode 0600 plus the group and other read
//! bits of its source file (unless `-p`), so a table of secrets stays secret; when run by
//! root (and without `-o`) it is given the owner and group of the source file, which is the
//! result Postfix gets by dropping privileges to the source owner. A rebuilt table keeps
//! the mode (and, for root, the owner) of the file it replaces. The temporary file lives in
//! a mode-0700 directory, so nobody can open it or swap in a symlink while it is written.
//!
//! # Diagnostics
//!
//! Problems are reported on standard error as `postmap: warning: ...` or as one
//! `postmap: fatal: ...` line that says what to do. Exit status: 0 on success (and for a
//! `-q`/`-d` key that was found), 1 for a `-q`/`-d` key that was not found, otherwise a
//! sysexits(3) code: 64 usage (also an unsupported table type or operation), 65 bad input
//! data (syntax error, invalid UTF-8, corrupt `.db` file), 66 a source or `.db` file that
//! cannot be read, 69 an unimplemented Postfix feature, 73 the `.db` file cannot be written,
//! 74 an I/O error on standard input or output, 78 a configuration problem (main.cf missing,
//! unsupported `default_database_type`).
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
//!
//! # Files
//!
//! - `file_name.db`: the table built from `file_name` (format: the posthorn-tables crate
//!   documentation).
//! - `.file_name.db.*.new/`: private build directory, removed when `postmap` exits; one left
//!   by a killed `postmap` can be deleted.
//!
//! # Examples
//!
//! ```text
//! postmap /etc/posthorn/virtual
//! postmap -q info@example.org /etc/posthorn/virtual
//! printf 'user@example.org  mailbox/user/\n' | postmap -i /etc/posthorn/vmailbox
//! postmap -q x 'inline:{ x=1, y=2 }'
//! ```
//!
//! # See also
//!
//! postalias(1), newaliases(1), posthorn.conf(5), aliases(5), sysexits(3).

fn main() {
    std::process::exit(posthorn_postmap::main(posthorn_postmap::Tool::Postmap));
}
