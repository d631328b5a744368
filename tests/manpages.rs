//! Man pages for the programs are generated from each program's `//!` header (Synopsis,
//! Description, ...), and committed under man/. This test fails when they drift; run it
//! with POSTHORN_BLESS=1 to rewrite them.

use std::fs;
use std::path::{Path, PathBuf};

/// (program, section, source file)
const PAGES: &[(&str, u8, &str)] = &[
    ("posthorn", 1, "crates/posthorn/src/main.rs"),
    ("master", 8, "crates/master/src/main.rs"),
    ("pickup", 8, "crates/pickup/src/main.rs"),
    ("cleanup", 8, "crates/cleanup/src/main.rs"),
    ("qmgr", 8, "crates/qmgr/src/main.rs"),
    ("smtpd", 8, "crates/smtpd/src/main.rs"),
    ("smtp", 8, "crates/smtp/src/main.rs"),
    ("bounce", 8, "crates/bounce/src/main.rs"),
    ("local", 8, "crates/local/src/bin/local.rs"),
    ("postqueue", 1, "crates/postqueue/src/lib.rs"),
    ("postdrop", 1, "crates/postdrop/src/lib.rs"),
    ("showq", 8, "crates/showq/src/main.rs"),
    ("virtual", 8, "crates/local/src/bin/virtual.rs"),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Escapes roff specials and turns `code` into bold.
fn inline(s: &str) -> String {
    let mut out = String::new();
    let mut bold = false;
    for c in s.chars() {
        match c {
            '`' => {
                out.push_str(if bold { "\\fR" } else { "\\fB" });
                bold = !bold;
            }
            '\\' => out.push_str("\\e"),
            '-' => out.push_str("\\-"),
            _ => out.push(c),
        }
    }
    if bold {
        out.push_str("\\fR");
    }
    out
}

/// Converts a program's `//!` header into a man page.
fn render(name: &str, section: u8, src: &str) -> String {
    let doc: Vec<String> = src
        .lines()
        .take_while(|l| l.starts_with("//!"))
        .map(|l| {
            l.trim_start_matches("//!")
                .strip_prefix(' ')
                .unwrap_or(l.trim_start_matches("//!"))
                .to_string()
        })
        .collect();
    let title = doc.first().cloned().unwrap_or_default();
    let mut out = format!(
        ".TH {} {section} \"\" \"posthorn\" \"posthorn manual\"\n.SH NAME\n{}\n",
        name.to_uppercase(),
        inline(&title)
    );
    let mut in_code = false;
    for line in doc.iter().skip(1) {
        if line.starts_with("```") {
            out.push_str(if in_code { ".fi\n" } else { ".nf\n" });
            in_code = !in_code;
        } else if in_code {
            out.push_str(&format!("{}\n", line.replace('\\', "\\e")));
        } else if let Some(h) = line.strip_prefix("# ") {
            out.push_str(&format!(".SH {}\n", h.to_uppercase()));
        } else if line.trim().is_empty() {
            out.push_str(".PP\n");
        } else if let Some(item) = line.strip_prefix("- ") {
            out.push_str(&format!(".IP \\(bu 2\n{}\n", inline(item)));
        } else if line.starts_with("  ") {
            out.push_str(&format!("{}\n", inline(line.trim_start())));
        } else if line.starts_with('|') {
            out.push_str(&format!(".br\n{}\n", inline(line)));
        } else {
            out.push_str(&format!("{}\n", inline(line)));
        }
    }
    out.replace(".PP\n.PP\n", ".PP\n")
        .replace(".PP\n.SH", ".SH")
}

#[test]
fn man_pages_match_program_headers() {
    let bless = std::env::var_os("POSTHORN_BLESS").is_some();
    let mut stale = Vec::new();
    for &(name, section, src) in PAGES {
        let text = fs::read_to_string(root().join(src)).unwrap();
        assert!(
            text.starts_with("//! "),
            "{src} must open with its man page"
        );
        let page = render(name, section, &text);
        let path = root().join(format!("man/man{section}/{name}.{section}"));
        if bless {
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, &page).unwrap();
        } else if fs::read_to_string(&path).ok().as_deref() != Some(page.as_str()) {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "man pages out of date (run POSTHORN_BLESS=1 cargo test -p posthorn-e2e --test manpages): {stale:?}"
    );
}

#[test]
fn rendering_escapes_and_structures() {
    let p = render(
        "x",
        8,
        "//! x - demo\n//!\n//! # Synopsis\n//! `x -v`\n//! - a-b\n",
    );
    assert!(
        p.contains(".SH SYNOPSIS\n\\fBx \\-v\\fR\n.IP \\(bu 2\na\\-b\n"),
        "{p}"
    );
}
