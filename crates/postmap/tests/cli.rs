//! End-to-end tests of the `postmap` and `postalias` binaries on files in temp directories:
//! each test gets a configuration directory with an empty main.cf and passes it with `-c`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use posthorn_tables::{AddressLookup, HashTable, Table, lookup_address_with};

/// A temp directory with `main.cf`, where tables are built.
struct Dir {
    tmp: tempfile::TempDir,
}

impl Dir {
    fn new() -> Dir {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("main.cf"), "").unwrap();
        Dir { tmp }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// Writes `text` to `name`; returns the path as text.
    fn write(&self, name: &str, text: &str) -> String {
        let path = self.path(name);
        fs::write(&path, text).unwrap();
        path.display().to_string()
    }

    /// Runs `bin` with `-c DIR` and `args`, feeding `stdin`.
    fn run(&self, bin: &str, args: &[&str], stdin: &[u8]) -> Output {
        let mut child = Command::new(bin)
            .arg("-c")
            .arg(self.tmp.path())
            .args(args)
            .env_remove("MAIL_CONFIG")
            .env_remove("MAIL_VERBOSE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin).unwrap();
        drop(input);
        child.wait_with_output().unwrap()
    }

    fn postmap(&self, args: &[&str], stdin: impl AsRef<[u8]>) -> Output {
        self.run(env!("CARGO_BIN_EXE_postmap"), args, stdin.as_ref())
    }

    fn postalias(&self, args: &[&str], stdin: impl AsRef<[u8]>) -> Output {
        self.run(env!("CARGO_BIN_EXE_postalias"), args, stdin.as_ref())
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap()
}

/// Asserts success with no diagnostics.
fn ok(out: &Output) {
    assert_eq!(code(out), 0, "stderr: {}", stderr(out));
    assert_eq!(stderr(out), "");
}

#[test]
fn build_then_query_found_and_not_found() {
    let dir = Dir::new();
    let src = dir.write(
        "virtual",
        "# virtual(5)\nInfo@Example.org   alice\n\nsales@example.org bob,\n    carol\n",
    );
    ok(&dir.postmap(&[&src], ""));
    assert!(dir.path("virtual.db").exists());

    let out = dir.postmap(&["-q", "info@example.org", &src], "");
    ok(&out);
    assert_eq!(stdout(&out), "alice\n");
    // Queries fold case; continuation lines keep their leading whitespace.
    let out = dir.postmap(&["-q", "SALES@example.ORG", &format!("hash:{src}")], "");
    assert_eq!(stdout(&out), "bob,    carol\n");

    let out = dir.postmap(&["-q", "nobody@example.org", &src], "");
    assert_eq!(code(&out), 1);
    assert_eq!(stdout(&out), "");
    assert_eq!(stderr(&out), "");

    // Several tables: the first value found wins.
    let other = dir.write(
        "other",
        "nobody@example.org elsewhere\ninfo@example.org shadowed\n",
    );
    ok(&dir.postmap(&[&other], ""));
    let out = dir.postmap(&["-q", "nobody@example.org", &src, &other], "");
    assert_eq!((code(&out), stdout(&out).as_str()), (0, "elsewhere\n"));
    let out = dir.postmap(&["-q", "info@example.org", &src, &other], "");
    assert_eq!(stdout(&out), "alice\n");
}

#[test]
fn query_keys_from_stdin() {
    let dir = Dir::new();
    let src = dir.write("t", "a 1\nb 2\n");
    ok(&dir.postmap(&[&src], ""));
    let out = dir.postmap(&["-q", "-", &src], "a\nmissing\nB\r\n");
    ok(&out);
    assert_eq!(stdout(&out), "a\t1\nB\t2\n");
    let out = dir.postmap(&["-q", "-", &src], "x\ny\n");
    assert_eq!((code(&out), stdout(&out).as_str()), (1, ""));
}

#[test]
fn dump_lists_entries_in_source_order() {
    let dir = Dir::new();
    let src = dir.write("t", "zeta 1\nAlpha 2\nmid 3 4\n");
    ok(&dir.postmap(&[&src], ""));
    let out = dir.postmap(&["-s", &src], "");
    ok(&out);
    assert_eq!(stdout(&out), "zeta\t1\nalpha\t2\nmid\t3 4\n");

    let out = dir.postmap(&["-s", "inline:{ b=2, a=1 }"], "");
    assert_eq!(stdout(&out), "b\t2\na\t1\n");
    let out = dir.postmap(&["-s", "static:x"], "");
    assert_eq!(code(&out), 64);
    assert!(stderr(&out).starts_with("postmap: fatal: table static:x: "));
}

#[test]
fn delete_keys() {
    let dir = Dir::new();
    let src = dir.write("t", "a 1\nb 2\nc 3\n");
    ok(&dir.postmap(&[&src], ""));
    let out = dir.postmap(&["-d", "B", &src], "");
    ok(&out);
    assert_eq!(stdout(&dir.postmap(&["-s", &src], "")), "a\t1\nc\t3\n");
    // Not found: exit 1 and the file is not rewritten.
    let inode = fs::metadata(dir.path("t.db")).unwrap().ino();
    assert_eq!(code(&dir.postmap(&["-d", "b", &src], "")), 1);
    assert_eq!(fs::metadata(dir.path("t.db")).unwrap().ino(), inode);
    // Keys from stdin; the source file is never touched.
    ok(&dir.postmap(&["-d", "-", &src], "a\nnope\n"));
    assert_eq!(stdout(&dir.postmap(&["-s", &src], "")), "c\t3\n");
    assert_eq!(fs::read_to_string(&src).unwrap(), "a 1\nb 2\nc 3\n");
    // Deleting from a table that was never built.
    let out = dir.postmap(&["-d", "a", &dir.path("none").display().to_string()], "");
    assert_eq!(code(&out), 66);
    assert!(
        stderr(&out).contains("build it first: postmap"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn incremental_adds_from_stdin() {
    let dir = Dir::new();
    let src = dir.write("t", "a 1\nb 2\n");
    ok(&dir.postmap(&[&src], ""));
    let out = dir.postmap(&["-i", &src], "c 3\nB 20\nd 4\n   continued\n");
    assert_eq!(code(&out), 0);
    assert_eq!(
        stderr(&out),
        "postmap: warning: stdin, line 2: duplicate entry: \"b\"\n"
    );
    assert_eq!(
        stdout(&dir.postmap(&["-s", &src], "")),
        "a\t1\nb\t2\nc\t3\nd\t4   continued\n"
    );
    ok(&dir.postmap(&["-i", "-r", &src], "b 20\n"));
    ok(&dir.postmap(&["-i", "-w", &src], "a 10\n"));
    assert_eq!(
        stdout(&dir.postmap(&["-s", &src], "")),
        "a\t1\nb\t20\nc\t3\nd\t4   continued\n"
    );
    // -i creates a table that does not exist yet; no source file is needed.
    let fresh = dir.path("fresh").display().to_string();
    ok(&dir.postmap(&["-i", &fresh], "k v\n"));
    assert_eq!(stdout(&dir.postmap(&["-q", "k", &fresh], "")), "v\n");
    assert!(!Path::new(&fresh).exists());
}

#[test]
fn concurrent_writers_lose_no_entries() {
    let dir = Dir::new();
    let src = dir.write("t", "base 0\n");
    ok(&dir.postmap(&[&src], ""));
    let children: Vec<_> = (0..8)
        .map(|n| {
            let mut child = Command::new(env!("CARGO_BIN_EXE_postmap"))
                .arg("-c")
                .arg(dir.tmp.path())
                .args(["-i", &src])
                .stdin(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut input = child.stdin.take().unwrap();
            for k in 0..50 {
                writeln!(input, "k{n}-{k} v").unwrap();
            }
            drop(input);
            child
        })
        .collect();
    for child in children {
        ok(&child.wait_with_output().unwrap());
    }
    let out = dir.postmap(&["-s", &src], "");
    assert_eq!(stdout(&out).lines().count(), 1 + 8 * 50);
}

#[test]
fn syntax_errors_name_file_and_line_and_keep_the_old_table() {
    let dir = Dir::new();
    let src = dir.write("t", "a 1\n");
    ok(&dir.postmap(&[&src], ""));
    fs::write(&src, "a 2\n# comment\nlonely\n").unwrap();
    let out = dir.postmap(&[&src], "");
    assert_eq!(code(&out), 65);
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!(
            "postmap: fatal: {src}, line 3: expected format: key whitespace value"
        )),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(stdout(&dir.postmap(&["-q", "a", &src], "")), "1\n");

    let out = dir.postmap(&["-i", &src], b"ok 1\n\xc3\n");
    assert_eq!(code(&out), 65);
    assert!(
        stderr(&out).contains("stdin, line 2: invalid UTF-8"),
        "{}",
        stderr(&out)
    );

    // Duplicates in the source are warnings with the line.
    let src = dir.write("dups", "x 1\ny 2\nX 3\n");
    let out = dir.postmap(&[&src], "");
    assert_eq!(code(&out), 0);
    assert_eq!(
        stderr(&out),
        format!("postmap: warning: {src}, line 3: duplicate entry: \"x\"\n")
    );
    ok(&dir.postmap(&["-r", &src], ""));
    assert_eq!(stdout(&dir.postmap(&["-q", "x", &src], "")), "3\n");
}

#[test]
fn usage_and_configuration_errors() {
    let dir = Dir::new();
    let src = dir.write("t", "a 1\n");
    let out = dir.postmap(&["-q", "a", "-s", &src], "");
    assert_eq!(code(&out), 64);
    assert!(
        stderr(&out).starts_with("postmap: fatal: specify only one of -s or -q or -d; usage: ")
    );
    let out = dir.postmap(&["btree:/x"], "");
    assert_eq!(code(&out), 64);
    let out = dir.postmap(&[&dir.path("missing").display().to_string()], "");
    assert_eq!(code(&out), 66);
    assert!(stderr(&out).contains("create the source file first"));

    let out = Command::new(env!("CARGO_BIN_EXE_postmap"))
        .args(["-q", "a", &src])
        .env("MAIL_CONFIG", dir.path("nowhere"))
        .output()
        .unwrap();
    assert_eq!(code(&out), 78);
    assert!(stderr(&out).contains("main.cf: No such file or directory"));

    fs::write(dir.path("main.cf"), "default_database_type = lmdb\n").unwrap();
    assert_eq!(code(&dir.postmap(&[&src], "")), 78);
    ok(&dir.postmap(&[&format!("hash:{src}")], ""));

    // Accepted and ignored: -N, -n (no NUL convention); -f with a warning.
    ok(&dir.postmap(&["-N", "-n", &format!("hash:{src}")], ""));
    let out = dir.postmap(&["-f", &format!("hash:{src}")], "");
    assert_eq!(code(&out), 0);
    assert!(stderr(&out).contains("-f is ignored"), "{}", stderr(&out));
}

#[test]
fn inline_and_static_queries() {
    let dir = Dir::new();
    let out = dir.postmap(&["-q", "B", "inline:{ a=1, b = two }"], "");
    assert_eq!(stdout(&out), "two\n");
    let out = dir.postmap(&["-q", "anything", "static:{fixed value}"], "");
    assert_eq!(stdout(&out), "fixed value\n");
    let out = dir.postmap(&["-d", "a", "inline:{ a=1 }"], "");
    assert_eq!(code(&out), 64);
    assert!(stderr(&out).contains("read-only"));
}

#[test]
fn new_table_copies_source_read_permissions() {
    let dir = Dir::new();
    let src = dir.write("sasl_passwd", "[relay]:587 user:secret\n");
    fs::set_permissions(&src, fs::Permissions::from_mode(0o640)).unwrap();
    ok(&dir.postmap(&[&src], ""));
    let db = dir.path("sasl_passwd.db");
    assert_eq!(fs::metadata(&db).unwrap().mode() & 0o777, 0o640);
    // A rebuild keeps the mode of the table it replaces.
    fs::set_permissions(&db, fs::Permissions::from_mode(0o600)).unwrap();
    ok(&dir.postmap(&[&src], ""));
    assert_eq!(fs::metadata(&db).unwrap().mode() & 0o777, 0o600);
    // -p: default mode for a new file.
    fs::remove_file(&db).unwrap();
    ok(&dir.postmap(&["-p", &src], ""));
    assert_eq!(
        fs::metadata(&db).unwrap().mode() & 0o044,
        0o044 & !umask_guess(&dir)
    );
    // Nothing but the source, the table and main.cf is left in the directory.
    let mut names: Vec<String> = fs::read_dir(dir.tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["main.cf", "sasl_passwd", "sasl_passwd.db"]);
}

#[test]
fn root_gives_a_new_table_the_source_owner() {
    if !posthorn_sys_is_root() {
        return; // only root can give files away
    }
    let dir = Dir::new();
    let src = dir.write("virtual", "a b\n");
    std::os::unix::fs::chown(&src, Some(65534), Some(65534)).unwrap();
    ok(&dir.postmap(&[&src], ""));
    let db = dir.path("virtual.db");
    let meta = fs::metadata(&db).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
    // A rebuild keeps the owner of the table it replaces, even with -o.
    ok(&dir.postmap(&["-o", &src], ""));
    assert_eq!(fs::metadata(&db).unwrap().uid(), 65534);
    // -o: a new table stays root's.
    fs::remove_file(&db).unwrap();
    ok(&dir.postmap(&["-o", &src], ""));
    assert_eq!(fs::metadata(&db).unwrap().uid(), 0);
}

/// Whether the tests run as root (the effective uid of a file this process creates).
fn posthorn_sys_is_root() -> bool {
    let probe = tempfile::NamedTempFile::new().unwrap();
    fs::metadata(probe.path()).unwrap().uid() == 0
}

/// The process umask, seen through a file created with mode 0666.
fn umask_guess(dir: &Dir) -> u32 {
    let probe = dir.path("probe");
    fs::write(&probe, "").unwrap();
    let mode = fs::metadata(&probe).unwrap().mode() & 0o777;
    fs::remove_file(&probe).unwrap();
    0o666 & !mode
}

#[test]
fn an_open_table_sees_a_rebuild() {
    let dir = Dir::new();
    let src = dir.write("transport", "example.org smtp:[a]\n");
    ok(&dir.postmap(&[&src], ""));
    let table = Table::open(&format!("hash:{src}")).unwrap();
    assert_eq!(
        table.lookup("example.org").unwrap().as_deref(),
        Some("smtp:[a]")
    );
    fs::write(&src, "example.org smtp:[b]\n").unwrap();
    ok(&dir.postmap(&[&src], ""));
    assert_eq!(
        table.lookup("example.org").unwrap().as_deref(),
        Some("smtp:[b]")
    );
    ok(&dir.postmap(&["-i", "-r", &src], "example.org smtp:[c]\n"));
    assert_eq!(
        table.lookup("example.org").unwrap().as_deref(),
        Some("smtp:[c]")
    );
}

#[test]
fn address_lookups_use_postfix_order() {
    let dir = Dir::new();
    let src = dir.write(
        "virtual",
        "user+ext@example.org exact\nuser@example.org full\nuser local\n@example.org catchall\n",
    );
    ok(&dir.postmap(&[&src], ""));
    let table = Table::open(&format!("hash:{src}")).unwrap();
    let find = |addr: &str| lookup_address_with(&table, addr, "+", AddressLookup::ALL).unwrap();
    assert_eq!(find("user+ext@example.org").as_deref(), Some("exact"));
    assert_eq!(find("User+other@Example.org").as_deref(), Some("full"));
    assert_eq!(find("someone@example.org").as_deref(), Some("catchall"));
    assert_eq!(find("someone@elsewhere.org"), None);
}

#[test]
fn aliases_with_quoted_commands() {
    let dir = Dir::new();
    let src = dir.write(
        "aliases",
        "# aliases(5)\n\
         MAILER-DAEMON: postmaster\n\
         postmaster: root\n\
         root: admin@example.org, \"|/usr/bin/logger -t mail, urgent\"\n\
         log: \"/var/log/mail copy\",\n\
         \t:include:/etc/mail/list\n\
         \"the boss\": \"john doe\"@example.org\n\
         root: again\n",
    );
    let out = dir.postalias(&[&src], "");
    assert_eq!(code(&out), 0);
    assert_eq!(
        stderr(&out),
        format!("postalias: warning: {src}, line 8: duplicate entry: \"root\"\n")
    );
    let out = dir.postalias(&["-q", "ROOT", &src], "");
    ok(&out);
    assert_eq!(
        stdout(&out),
        "admin@example.org, \"|/usr/bin/logger -t mail, urgent\"\n"
    );
    let value = stdout(&out);
    assert_eq!(
        posthorn_tables::split_alias_targets(value.trim_end()),
        vec!["admin@example.org", "|/usr/bin/logger -t mail, urgent"]
    );
    let out = dir.postalias(&["-q", "-", &src], "log\nnobody\n");
    assert_eq!(
        stdout(&out),
        "log:\t/var/log/mail copy, :include:/etc/mail/list\n"
    );
    let listing = stdout(&dir.postalias(&["-s", &src], ""));
    assert_eq!(
        listing,
        "mailer-daemon:\tpostmaster\n\
         postmaster:\troot\n\
         root:\tadmin@example.org, \"|/usr/bin/logger -t mail, urgent\"\n\
         log:\t/var/log/mail copy, :include:/etc/mail/list\n\
         \"the boss\":\tjohn doe@example.org\n"
    );
    // The listing reads back as aliases(5) text into an identical table.
    let copy = dir.path("copy").display().to_string();
    ok(&dir.postalias(&["-i", &copy], &listing));
    assert_eq!(stdout(&dir.postalias(&["-s", &copy], "")), listing);

    // Syntax errors are fatal with file and line.
    let bad = dir.write("bad", "ok: x\nlog: \"|unterminated, command\n");
    let out = dir.postalias(&[&bad], "");
    assert_eq!(code(&out), 65);
    assert!(
        stderr(&out).starts_with(&format!(
            "postalias: fatal: {bad}, line 2: unbalanced double quote"
        )),
        "{}",
        stderr(&out)
    );
    assert!(!dir.path("bad.db").exists());
}

/// The keys and values of the big-table test.
fn big_entry(i: usize) -> (String, String) {
    (
        format!("user{i}@example{}.org", i % 97),
        format!("mailbox/{i}/"),
    )
}

#[test]
fn one_million_keys() {
    const N: usize = 1_000_000;
    let dir = Dir::new();
    let mut text = String::with_capacity(N * 40);
    for i in 0..N {
        let (k, v) = big_entry(i);
        text.push_str(&k);
        text.push(' ');
        text.push_str(&v);
        text.push('\n');
    }
    let src = dir.write("big", &text);
    drop(text);

    let started = Instant::now();
    ok(&dir.postmap(&[&src], ""));
    let built = started.elapsed();

    let started = Instant::now();
    let table = Table::open(&format!("hash:{src}")).unwrap();
    let opened = started.elapsed();
    let started = Instant::now();
    for i in 0..N {
        let (k, v) = big_entry(i);
        assert_eq!(
            table.lookup(&k).unwrap().as_deref(),
            Some(v.as_str()),
            "{k}"
        );
    }
    assert_eq!(table.lookup("user0@example1.org").unwrap(), None);
    let looked_up = started.elapsed();

    let started = Instant::now();
    let snapshot = HashTable::open(&dir.path("big.db")).unwrap();
    assert_eq!(snapshot.len(), N);
    let mut found = 0;
    for i in (0..N).rev() {
        let (k, _) = big_entry(i);
        found += usize::from(snapshot.get(&k).is_some());
    }
    assert_eq!(found, N);
    let raw = started.elapsed();

    let rate = |d: std::time::Duration| N as f64 / d.as_secs_f64();
    eprintln!(
        "1,000,000 keys ({} build): postmap build {built:?} ({:.0} keys/s); open {opened:?}; \
         Table::lookup {looked_up:?} ({:.0}/s, one stat each); HashTable::get {raw:?} ({:.0}/s)",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        rate(built),
        rate(looked_up),
        rate(raw)
    );
}
