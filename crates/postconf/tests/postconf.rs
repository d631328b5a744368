//! postconf(1) end to end: the built binary on configuration directories in temp dirs.

use std::fs;
use std::path::Path;
use std::process::Command;

/// What a run of postconf produced.
struct Run {
    /// Exit status code.
    code: i32,
    /// Standard output.
    stdout: String,
    /// Standard error.
    stderr: String,
}

/// Runs postconf with `args` (MAIL_CONFIG cleared, so only `-c` chooses a directory).
fn postconf(args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_postconf"))
        .args(args)
        .env_remove("MAIL_CONFIG")
        .output()
        .expect("run postconf");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8(output.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(output.stderr).expect("stderr is UTF-8"),
    }
}

/// Runs postconf -c DIR with `args`.
fn postconf_in(dir: &Path, args: &[&str]) -> Run {
    let mut all = vec!["-c", dir.to_str().expect("UTF-8 temp path")];
    all.extend_from_slice(args);
    postconf(&all)
}

/// Asserts success without diagnostics and returns standard output.
fn ok(run: Run) -> String {
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    assert_eq!(run.stderr, "", "stdout: {}", run.stdout);
    run.stdout
}

const MAIN_CF: &str = "\
# posthorn main.cf for tests
myhostname = mx.example.org

# Local domains:
mydestination = $myhostname,
    localhost.$mydomain,
    localhost
my_networks_list = 127.0.0.0/8
mynetworks = $my_networks_list
queue_directory = /var/spool/test
";

const MASTER_CF: &str = "\
# service type  private unpriv  chroot  wakeup  maxproc command + args
smtp      inet  n       -       n       -       -       smtpd
  -o smtpd_helo_required=yes
pickup    unix  n       -       n       60      1       pickup
relay     unix  -       -       n       -       -       smtp
local     unix  -       n       n       -       -       local
";

/// A configuration directory with the test main.cf and master.cf.
fn instance() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("main.cf"), MAIN_CF).expect("main.cf");
    fs::write(dir.path().join("master.cf"), MASTER_CF).expect("master.cf");
    dir
}

fn read(dir: &Path, file: &str) -> String {
    fs::read_to_string(dir.join(file)).expect("read back")
}

#[test]
fn mail_version_for_the_benchmark_adapter() {
    let version = env!("CARGO_PKG_VERSION");
    let run = postconf(&["-d", "-h", "mail_version"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, format!("{version}\n"));
    let run = postconf(&["-d", "mail_version"]);
    assert_eq!(run.stdout, format!("mail_version = {version}\n"));
    assert_eq!(run.stdout, "mail_version = 0.1.0\n");
}

#[test]
fn defaults_list_every_parameter_sorted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = ok(postconf_in(dir.path(), &["-d"]));
    let names: Vec<&str> = out
        .lines()
        .map(|l| l.split(" = ").next().unwrap_or(l).trim_end_matches(" ="))
        .collect();
    assert_eq!(names.len(), posthorn_config::PARAMS.len());
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted);
    assert!(out.contains("\nmyorigin = $myhostname\n"), "{out}");
    assert!(out.contains("\nrelayhost =\n"), "{out}");
    // Computed defaults are computed.
    let host = ok(postconf_in(dir.path(), &["-dh", "myhostname"]));
    assert!(host.trim().contains('.'), "{host}");
    // -d ignores main.cf.
    fs::write(dir.path().join("main.cf"), "myorigin = elsewhere\n").expect("write");
    assert_eq!(
        ok(postconf_in(dir.path(), &["-d", "myorigin"])),
        "myorigin = $myhostname\n"
    );
    // -d -x expands defaults only.
    let expanded = ok(postconf_in(dir.path(), &["-dx", "myorigin", "myhostname"]));
    let lines: Vec<&str> = expanded.lines().collect();
    assert_eq!(
        lines[0].trim_start_matches("myorigin = "),
        lines[1].trim_start_matches("myhostname = ")
    );
}

#[test]
fn all_parameters_include_service_and_user_defined_ones() {
    let dir = instance();
    let out = ok(postconf_in(dir.path(), &[]));
    assert!(out.contains("\nmyhostname = mx.example.org\n"), "{out}");
    assert!(
        out.contains("\nmydestination = $myhostname, localhost.$mydomain, localhost\n"),
        "{out}"
    );
    assert!(out.contains("\nmy_networks_list = 127.0.0.0/8\n"), "{out}");
    assert!(
        out.contains(
            "\nrelay_destination_concurrency_limit = $default_destination_concurrency_limit\n"
        ),
        "{out}"
    );
    assert!(!out.contains("pickup_destination"), "{out}");
}

#[test]
fn non_default_settings() {
    let dir = instance();
    assert_eq!(
        ok(postconf_in(dir.path(), &["-n"])),
        "\
my_networks_list = 127.0.0.0/8
mydestination = $myhostname, localhost.$mydomain, localhost
myhostname = mx.example.org
mynetworks = $my_networks_list
queue_directory = /var/spool/test
"
    );
    assert_eq!(
        ok(postconf_in(
            dir.path(),
            &["-nx", "mynetworks", "mydestination", "myorigin"]
        )),
        "\
mynetworks = 127.0.0.0/8
mydestination = mx.example.org, localhost.example.org, localhost
"
    );
}

#[test]
fn names_values_and_unknown_names() {
    let dir = instance();
    assert_eq!(
        ok(postconf_in(dir.path(), &["myhostname", "myorigin"])),
        "myhostname = mx.example.org\nmyorigin = $myhostname\n"
    );
    assert_eq!(
        ok(postconf_in(dir.path(), &["-h", "myhostname", "relayhost"])),
        "mx.example.org\n\n"
    );
    assert_eq!(
        ok(postconf_in(dir.path(), &["-hx", "myorigin"])),
        "mx.example.org\n"
    );
    assert_eq!(
        ok(postconf_in(dir.path(), &["-H", "myorigin"])),
        "myorigin\n"
    );
    assert_eq!(
        ok(postconf_in(
            dir.path(),
            &["-x", "-o", "myhostname=o.example", "myorigin"]
        )),
        "myorigin = o.example\n"
    );
    let run = postconf_in(dir.path(), &["no_such_parameter", "myhostname"]);
    assert_eq!(run.code, 0);
    assert_eq!(run.stdout, "myhostname = mx.example.org\n");
    assert_eq!(
        run.stderr,
        "postconf: warning: no_such_parameter: unknown parameter\n"
    );
}

#[test]
fn unused_main_cf_settings_are_reported() {
    let dir = instance();
    fs::write(
        dir.path().join("main.cf"),
        format!("{MAIN_CF}smtpd_bannre = typo\n"),
    )
    .expect("write");
    let run = postconf_in(dir.path(), &["-n"]);
    assert_eq!(run.code, 0);
    assert!(!run.stdout.contains("smtpd_bannre"), "{}", run.stdout);
    assert_eq!(
        run.stderr,
        format!(
            "postconf: warning: {}: unused parameter: smtpd_bannre=typo\n",
            dir.path().join("main.cf").display()
        )
    );
    let run = postconf_in(dir.path(), &["-nq"]);
    assert_eq!(run.stderr, "");
}

#[test]
fn edit_sets_in_place_and_appends() {
    let dir = instance();
    ok(postconf_in(
        dir.path(),
        &[
            "-e",
            "mydestination = localhost",
            "relayhost=[smarthost.example.org]:587",
            "alias_maps = hash:/etc/aliases",
        ],
    ));
    assert_eq!(
        read(dir.path(), "main.cf"),
        "\
# posthorn main.cf for tests
myhostname = mx.example.org

# Local domains:
mydestination = localhost
my_networks_list = 127.0.0.0/8
mynetworks = $my_networks_list
queue_directory = /var/spool/test
alias_maps = hash:/etc/aliases
relayhost = [smarthost.example.org]:587
"
    );
    assert!(!dir.path().join("main.cf.tmp").exists());
    // name=value without -e also edits; the same value again changes nothing.
    let before = read(dir.path(), "main.cf");
    ok(postconf_in(dir.path(), &["mydestination=localhost"]));
    assert_eq!(read(dir.path(), "main.cf"), before);
    assert_eq!(
        ok(postconf_in(dir.path(), &["-h", "relayhost"])),
        "[smarthost.example.org]:587\n"
    );
}

#[test]
fn edit_warns_about_bad_values_and_unused_names() {
    let dir = instance();
    let run = postconf_in(dir.path(), &["-e", "smtpd_timeout=soon", "smtpd_bannre=x"]);
    assert_eq!(run.code, 0);
    let main_cf = dir.path().join("main.cf").display().to_string();
    assert!(
        run.stderr.contains(&format!(
            "postconf: warning: {main_cf}: smtpd_timeout = soon: bad time value"
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!(
            "postconf: warning: {main_cf}: unused parameter: smtpd_bannre=x"
        )),
        "{}",
        run.stderr
    );
    assert!(read(dir.path(), "main.cf").ends_with("smtpd_bannre = x\nsmtpd_timeout = soon\n"));
}

#[test]
fn remove_and_comment_out() {
    let dir = instance();
    ok(postconf_in(
        dir.path(),
        &["-X", "mydestination", "queue_directory"],
    ));
    assert_eq!(
        read(dir.path(), "main.cf"),
        "\
# posthorn main.cf for tests
myhostname = mx.example.org

# Local domains:
my_networks_list = 127.0.0.0/8
mynetworks = $my_networks_list
"
    );
    ok(postconf_in(dir.path(), &["-#", "myhostname"]));
    assert!(read(dir.path(), "main.cf").contains("\n#myhostname = mx.example.org\n"));
    assert_eq!(ok(postconf_in(dir.path(), &["-n", "myhostname"])), "");
    // Removing what is not there is not an error.
    ok(postconf_in(dir.path(), &["-X", "myhostname"]));
}

#[test]
fn master_cf_entries() {
    let dir = instance();
    assert_eq!(
        ok(postconf_in(dir.path(), &["-M"])),
        "\
smtp       inet  n       -       n       -       -       smtpd -o smtpd_helo_required=yes
pickup     unix  n       -       n       60      1       pickup
relay      unix  -       -       n       -       -       smtp
local      unix  -       n       n       -       -       local
"
    );
    assert_eq!(
        ok(postconf_in(dir.path(), &["-Mf", "smtp/inet"])),
        "smtp       inet  n       -       n       -       -       smtpd\n    -o smtpd_helo_required=yes\n"
    );
    assert_eq!(
        ok(postconf_in(dir.path(), &["-M", "*/unix"]))
            .lines()
            .count(),
        3
    );
    let run = postconf_in(dir.path(), &["-M", "nope"]);
    assert_eq!(run.code, 0);
    assert_eq!(
        run.stderr,
        "postconf: warning: unmatched request: \"nope\"\n"
    );
}

#[test]
fn master_cf_edits() {
    let dir = instance();
    ok(postconf_in(
        dir.path(),
        &[
            "-Me",
            "smtp/inet=smtp inet n - n - 20 smtpd -o smtpd_tls_wrappermode=yes",
            "submission/inet=submission inet n - n - - smtpd -o syslog_name=posthorn/submission",
        ],
    ));
    assert_eq!(
        read(dir.path(), "master.cf"),
        "\
# service type  private unpriv  chroot  wakeup  maxproc command + args
smtp       inet  n       -       n       -       20      smtpd
    -o smtpd_tls_wrappermode=yes
pickup    unix  n       -       n       60      1       pickup
relay     unix  -       -       n       -       -       smtp
local     unix  -       n       n       -       -       local
submission inet  n       -       n       -       -       smtpd
    -o syslog_name=posthorn/submission
"
    );
    // What capacity tooling reads: field 7 of the inet entry is maxproc.
    let line = ok(postconf_in(dir.path(), &["-M", "smtp/inet"]));
    assert_eq!(line.split_whitespace().nth(6), Some("20"));

    ok(postconf_in(dir.path(), &["-M#", "submission/inet"]));
    assert!(read(dir.path(), "master.cf").ends_with(
        "#submission inet  n       -       n       -       -       smtpd\n#    -o syslog_name=posthorn/submission\n"
    ));
    ok(postconf_in(
        dir.path(),
        &["-MX", "relay/unix", "pickup/unix"],
    ));
    let text = read(dir.path(), "master.cf");
    assert!(
        !text.contains("\nrelay ") && !text.contains("\npickup "),
        "{text}"
    );
    posthorn_config::MasterCf::parse_str(&text, "master.cf", &posthorn_config::Config::defaults())
        .expect("the edited master.cf loads");

    // A bad entry is refused and the file stays as it was.
    let run = postconf_in(dir.path(), &["-Me", "x/inet=x inet y - n - - smtpd"]);
    assert_eq!(run.code, 64);
    assert!(
        run.stderr
            .starts_with("postconf: fatal: invalid master.cf entry"),
        "{}",
        run.stderr
    );
    assert_eq!(read(dir.path(), "master.cf"), text);
}

#[test]
fn lookup_table_types() {
    assert_eq!(ok(postconf(&["-m"])), "hash\ninline\nstatic\n");
}

#[test]
fn errors_say_what_to_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = postconf_in(dir.path(), &["-n"]);
    assert_eq!(run.code, 78);
    assert!(
        run.stderr.starts_with("postconf: fatal: open ")
            && run.stderr.contains(
                "main.cf: No such file or directory (name the configuration directory with -c"
            ),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.lines().count(), 1);
    let run = postconf_in(dir.path(), &["-e", "a=b"]);
    assert_eq!(run.code, 78);
    assert!(
        run.stderr.contains("create the file first"),
        "{}",
        run.stderr
    );
    fs::write(dir.path().join("main.cf"), "bogus line\n").expect("write");
    let run = postconf_in(dir.path(), &["-n"]);
    assert_eq!(run.code, 78);
    assert!(
        run.stderr.contains("main.cf:1: missing '='"),
        "{}",
        run.stderr
    );
    let run = postconf(&["-d", "-n"]);
    assert_eq!(run.code, 64);
    assert_eq!(
        run.stderr,
        "postconf: fatal: specify only one of -d, -e, -n, -X, -# (got -d and -n)\n"
    );
    let run = postconf(&["-e", "a b=c"]);
    assert_eq!(run.code, 64);
    assert_eq!(run.stdout, "");
}

#[test]
fn mail_config_names_the_directory() {
    let dir = instance();
    let output = Command::new(env!("CARGO_BIN_EXE_postconf"))
        .args(["-h", "myhostname"])
        .env("MAIL_CONFIG", dir.path())
        .output()
        .expect("run postconf");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "mx.example.org\n");
    assert_eq!(
        ok(postconf_in(dir.path(), &["-h", "config_directory"])),
        format!("{}\n", dir.path().display())
    );
}
