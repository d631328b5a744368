//! posthorn.conf(5), the main.cf parameter man page, generated from [`crate::PARAMS`].
//! The committed copy is man/man5/posthorn.conf.5; a unit test fails when it drifts
//! (refresh it with `POSTHORN_BLESS=1 cargo test -p posthorn-config`).

use std::fmt::Write as _;

use crate::params::{DefaultValue, Kind, PER_TRANSPORT};

/// The syntax part of the page, in roff.
const DESCRIPTION: &str = r#".SH DESCRIPTION
The posthorn main configuration file,
\fBmain.cf\fR in the configuration directory
(\fIconfig_directory\fR, default \fI/etc/posthorn\fR, or the directory given with
\fB\-c\fR or \fBMAIL_CONFIG\fR), uses the syntax of Postfix's main.cf:
.IP \(bu 3
Each logical line has the form \fIname\fR \fB=\fR \fIvalue\fR.
Whitespace around \fB=\fR is optional; whitespace at the end of a value is removed.
.IP \(bu 3
A line that starts with whitespace continues the logical line before it.
posthorn joins continued lines with one space.
.IP \(bu 3
Empty lines, whitespace-only lines and lines whose first non-whitespace character is
\fB#\fR are ignored. They do not end a logical line, so a comment may sit between a
line and its continuation. A \fB#\fR elsewhere is part of the value.
.IP \(bu 3
When a parameter is set more than once, the last setting wins.
.IP \(bu 3
\fB$\fIname\fR, \fB${\fIname\fB}\fR and \fB$(\fIname\fB)\fR are replaced with the value
of the named parameter (its setting, else its default), recursively.
\fB$$\fR is a literal \fB$\fR.
\fB${\fIname\fB?\fItext\fB}\fR gives \fItext\fR when \fIname\fR is non-empty,
\fB${\fIname\fB:\fItext\fB}\fR gives \fItext\fR when \fIname\fR is empty or undefined;
the forms \fB${\fIname\fB?{\fItext\fB}}\fR, \fB${\fIname\fB:{\fItext\fB}}\fR,
\fB${\fIname\fB?{\fItext1\fB}:{\fItext2\fB}}\fR and
\fB${{\fItext1\fB} == {\fItext2\fB} ? {\fItext3\fB} : {\fItext4\fB}}\fR
(also \fB!=\fR) work as in Postfix.
A reference to an undefined parameter expands to nothing and is reported as a warning;
a parameter that refers to itself, directly or through others, is an error.
A name that posthorn does not know is a user-defined parameter when another value refers
to it, and is reported as unknown otherwise.
.PP
Values have these kinds:
.TP
.B boolean
\fByes\fR or \fBno\fR (also \fBtrue\fR or \fBfalse\fR), in any case.
.TP
.B integer
A decimal number.
.TP
.B size
A number of bytes. As a posthorn extension (not portable to Postfix), a \fBk\fR,
\fBm\fR or \fBg\fR suffix multiplies by 1024, 1024\(ha2 or 1024\(ha3.
.TP
.B time
A number with an optional unit: \fBs\fR (seconds), \fBm\fR (minutes), \fBh\fR (hours),
\fBd\fR (days) or \fBw\fR (weeks). A bare number is in seconds unless the parameter says
otherwise.
.TP
.B list
Elements separated by whitespace and/or commas; text in \fB{ }\fR stays together.
.TP
.B lookup tables
A list of \fItype\fB:\fIname\fR tables, for example \fBhash:/etc/aliases\fR.
.TP
.B path
An absolute path name, or empty.
.TP
.B string
Free text.
.PP
Parameters marked \fIexpanded at delivery\fR keep their \fB$\fIname\fR references, which
the delivery agent replaces with attributes of each delivery (\fB$home\fR, \fB$user\fR,
\fB$extension\fR, ...).
"#;

/// Escapes text for a roff line: backslashes, and a leading `.` or `'` (control lines).
fn roff(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with(['.', '\'']) {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

/// The posthorn.conf(5) man page, in roff, with one entry per parameter of
/// [`crate::PARAMS`]. Deterministic: computed defaults are described, not computed.
pub fn manpage() -> String {
    let mut page = String::new();
    page.push_str(".\\\" Generated from crates/config (posthorn_config::manpage); do not edit.\n");
    page.push_str(".TH POSTHORN.CONF 5 \"\" \"posthorn\" \"File Formats\"\n");
    page.push_str(".SH NAME\nposthorn.conf \\- posthorn main.cf configuration parameters\n");
    page.push_str(".SH SYNOPSIS\n.B postconf \\-d\n.br\n.B postconf \\-n\n");
    page.push_str(DESCRIPTION);
    page.push_str(".SH PARAMETERS\n");
    for p in crate::PARAMS {
        let _ = writeln!(page, ".TP\n.B {}", roff(p.name));
        let default = match p.default {
            DefaultValue::Text("") => "empty".to_string(),
            DefaultValue::Text(text) => format!("\\fB{}\\fR", roff(text)),
            DefaultValue::Computed(_) => "computed at run time".to_string(),
        };
        let mut kind = p.kind.as_str().to_string();
        if p.kind == Kind::Duration && p.unit != 's' {
            let unit = match p.unit {
                'm' => "minutes",
                'h' => "hours",
                'd' => "days",
                _ => "weeks",
            };
            let _ = write!(kind, "; a bare number is in {unit}");
        }
        if p.raw {
            kind.push_str("; expanded at delivery");
        }
        let _ = writeln!(page, "({kind}; default: {default})");
        let _ = writeln!(page, ".br\n{}", roff(p.doc));
    }
    page.push_str(".SH \"PER-TRANSPORT PARAMETERS\"\n");
    page.push_str(
        "For a delivery transport \\fItransport\\fR (a master.cf service name), these \
         parameters default to the parameter on the right:\n",
    );
    for (suffix, fallback) in PER_TRANSPORT {
        let _ = writeln!(
            page,
            ".TP\n\\fItransport\\fB_{}\\fR\nDefault: \\fB${}\\fR.",
            roff(suffix),
            roff(fallback)
        );
    }
    page.push_str(".SH \"SEE ALSO\"\npostconf(1), master(8)\n");
    page
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn committed_man_page_is_current() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../man/man5/posthorn.conf.5");
        let page = manpage();
        if std::env::var_os("POSTHORN_BLESS").is_some_and(|v| v == "1") {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).expect("create man/man5");
            }
            std::fs::write(&path, &page).expect("write man page");
            return;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == page,
            "{} is out of date: run POSTHORN_BLESS=1 cargo test -p posthorn-config",
            path.display()
        );
    }

    #[test]
    fn every_parameter_has_an_entry() {
        let page = manpage();
        for p in crate::PARAMS {
            assert!(
                page.contains(&format!(".B {}\n", roff(p.name))),
                "{} missing",
                p.name
            );
        }
        assert!(!page.lines().any(|l| l.starts_with('\'')));
    }

    #[test]
    fn roff_escapes_control_characters() {
        assert_eq!(roff(".forward"), "\\&.forward");
        assert_eq!(roff("a\\b-c"), "a\\eb\\-c");
    }
}
