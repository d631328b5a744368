//! posthorn-config: reads posthorn's configuration files and owns THE parameter table.
//!
//! Role: every program that needs a setting goes through this crate. It parses main.cf
//! (Postfix syntax: `name = value`, continuation lines, `#` comments, `$name` expansion in
//! all of Postfix's forms) and master.cf (Postfix's columns and `-o` overrides), holds the
//! one table of parameters ([`PARAMS`]: name, kind, default, one-line doc), and answers with
//! expanded, typed values.
//!
//! Inputs: `config_directory/main.cf` and `config_directory/master.cf` (or text), and
//! overrides from master.cf `-o` options or command lines ([`Config::set`]).
//!
//! Outputs: [`Config`] (expanded values: [`Config::get`] and the typed getters),
//! [`Config::validate`] findings ([`ConfigDiag`], for `posthorn check` and `postconf`),
//! [`MasterCf`] services, and the posthorn.conf(5) man page ([`manpage`]).
//!
//! Decisions, where Postfix leaves room or posthorn differs:
//! - Continuation lines are joined with one space (Postfix keeps the line's own leading
//!   whitespace); text that starts with whitespace at the top of a file is ignored with a
//!   warning, as in Postfix.
//! - `${name?x}` / `${name:x}` test the *expanded* value of `name`.
//! - A parameter loop or an expansion syntax error never aborts: the part expands to "" and
//!   [`Config::validate`] reports an error with file and line. Invalid typed values make the
//!   typed getters fall back to the default (with a log warning); programs are expected to
//!   run `validate()` at start-up and refuse to run on errors, as `posthorn check` does.
//! - mydomain defaults to the *configured* myhostname minus its first label, and a
//!   dot-less system host name is completed with an explicit mydomain, as in Postfix.
//! - Per-transport parameters (`relay_destination_concurrency_limit`, ...) are known for
//!   every transport name and fall back to their `default_` parameter ([`PER_TRANSPORT`]).
//! - Sizes accept `k`/`m`/`g` suffixes (posthorn extension).

mod diag;
mod expand;
mod lines;
mod main_cf;
mod manpage;
mod master_cf;
mod params;
mod table;
pub mod trust;
mod values;

pub use diag::{ConfigDiag, ConfigError, Severity};
pub use main_cf::Config;
pub use manpage::manpage;
pub use master_cf::{MasterCf, Service, ServiceType, Wakeup};
pub use params::{DefaultValue, Kind, PER_TRANSPORT, Param, effective_param, param};
pub use table::PARAMS;
pub use values::{parse_bool, parse_duration, parse_int, parse_size, split_list};
