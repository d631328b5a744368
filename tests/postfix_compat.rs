//! Output formats compared with Postfix itself: the same situation (one deferred message)
//! is produced in a private Postfix instance and in a posthorn instance, and `postqueue -p`
//! and `-j` are compared field by field. Needs root and Postfix (Debian package postfix,
//! installed by .ci/run); without them the test says so and does nothing.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use posthorn_testkit::{Instance, is_root};

const POSTFIX: &str = "/usr/sbin/postfix";

/// A private Postfix instance whose one message to alice@virt.test is deferred.
struct Postfix {
    dir: tempfile::TempDir,
}

impl Postfix {
    fn start() -> Postfix {
        let dir = tempfile::Builder::new()
            .prefix("pfcompat")
            .tempdir_in("/tmp")
            .unwrap();
        let root = dir.path();
        for d in ["etc", "data", "queue", "mail"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        let master = fs::read_to_string("/etc/postfix/master.cf").unwrap();
        let master: String = master
            .lines()
            .filter(|l| !l.starts_with("smtp "))
            .map(|l| format!("{l}\n"))
            .collect();
        fs::write(root.join("etc/master.cf"), master).unwrap();
        let r = root.display();
        fs::write(
            root.join("etc/main.cf"),
            format!(
                "compatibility_level = 3.6\nqueue_directory = {r}/queue\ndata_directory = {r}/data\n\
                 mail_owner = postfix\nsetgid_group = postdrop\nmyhostname = mail.example.test\n\
                 mydestination =\nalias_maps =\nalias_database =\ninet_interfaces = 127.0.0.1\n\
                 inet_protocols = ipv4\nenable_long_queue_ids = yes\nvirtual_mailbox_domains = virt.test\n\
                 virtual_mailbox_base = {r}/mail\nvirtual_mailbox_maps = inline:{{ alice@virt.test=alice/ }}\n\
                 virtual_uid_maps = static:65534\nvirtual_gid_maps = static:65534\ndefer_transports = virtual\n\
                 maillog_file_prefixes = {r}\nmaillog_file = {r}/maillog\n"
            ),
        )
        .unwrap();
        if !Path::new("/etc/postfix/main.cf").exists() {
            fs::write("/etc/postfix/main.cf", "compatibility_level = 3.6\n").unwrap();
        }
        let _ = Command::new("chown")
            .arg("postfix")
            .arg(root.join("data"))
            .status();
        let etc = root.join("etc");
        let st = Command::new(POSTFIX)
            .arg("-c")
            .arg(&etc)
            .arg("start")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "postfix start");
        let pf = Postfix { dir };
        let mut c = Command::new("/usr/sbin/sendmail");
        c.arg("-C")
            .arg(&etc)
            .args(["-f", "sender@example.org", "alice@virt.test"])
            .stdin(Stdio::piped());
        let mut ch = c.spawn().unwrap();
        use std::io::Write;
        ch.stdin
            .take()
            .unwrap()
            .write_all(b"Subject: x\n\nhello\n")
            .unwrap();
        assert!(ch.wait().unwrap().success());
        pf
    }

    fn postqueue(&self, flag: &str) -> String {
        let out = Command::new("/usr/sbin/postqueue")
            .arg("-c")
            .arg(self.dir.path().join("etc"))
            .arg(flag)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new(POSTFIX)
            .arg("-c")
            .arg(self.dir.path().join("etc"))
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Waits until `f` gives output that contains `needle`.
fn wait_for(mut f: impl FnMut() -> String, needle: &str) -> String {
    for _ in 0..200 {
        let s = f();
        if s.contains(needle) {
            return s;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

/// The JSON keys of a line, in order.
fn keys(line: &str) -> Vec<String> {
    line.split('"')
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[1].starts_with(':') || w[1].starts_with(": "))
        .map(|w| w[0].to_string())
        .collect()
}

#[test]
fn postqueue_formats_match_postfix_field_by_field() {
    if !is_root() || !Path::new(POSTFIX).exists() {
        eprintln!(
            "SKIPPED: comparing with Postfix needs root and the postfix package (.ci/run installs it)"
        );
        return;
    }
    let pf = Postfix::start();
    let theirs = wait_for(|| pf.postqueue("-p"), "(deferred transport)");
    let theirs_j = pf.postqueue("-j");

    let mut inst = Instance::new("virtual_minimum_uid = 4000000000\n");
    inst.add_main_cf(&inst.virtual_cf("alice@virt.test=alice/"));
    inst.add_main_cf("virtual_minimum_uid = 4000000000\nminimal_backoff_time = 300s\nmaximal_backoff_time = 600s\n");
    inst.start();
    let out = inst.sendmail(
        &["-f", "sender@example.org", "alice@virt.test"],
        "Subject: x\n\nhello\n",
    );
    assert!(out.status.success());
    assert!(
        inst.wait_until(Duration::from_secs(20), || inst.queue_count("deferred")
            == 1)
    );
    let pq = |flag: &str| {
        String::from_utf8_lossy(&inst.command("postqueue").arg(flag).output().unwrap().stdout)
            .into_owned()
    };
    let ours = pq("-p");
    let ours_j = pq("-j");
    inst.stop();

    let t: Vec<&str> = theirs.lines().collect();
    let o: Vec<&str> = ours.lines().collect();
    assert_eq!(
        t.len(),
        o.len(),
        "line count\nPostfix:\n{theirs}\nposthorn:\n{ours}"
    );
    assert_eq!(o[0], t[0], "header line");
    // Message line: "%-17s %8ld %19.19s %s".
    for (name, line) in [("Postfix", t[1]), ("posthorn", o[1])] {
        assert_eq!(&line[17..18], " ", "{name}: {line}");
        assert!(
            line[18..26].trim_start().parse::<u64>().is_ok(),
            "{name} size column: {line}"
        );
        assert_eq!(&line[26..27], " ", "{name}: {line}");
        assert_eq!(line[27..46].len(), 19, "{name}: {line}");
        assert_eq!(&line[47..], "sender@example.org", "{name}: {line}");
    }
    assert_eq!(o[1][27..30], t[1][27..30], "weekday of the arrival time");
    // Reason line: right-aligned so that ")" ends in column 78.
    for (name, line) in [("Postfix", t[2]), ("posthorn", o[2])] {
        assert_eq!(line.len(), 78, "{name}: {line:?}");
        assert!(
            line.trim_start().starts_with('(') && line.ends_with(')'),
            "{name}: {line:?}"
        );
    }
    assert_eq!(o[3], t[3], "recipient line");
    assert_eq!(o[4], t[4], "blank line");
    assert_eq!(o[5], t[5], "trailer");
    // JSON: the same keys in the same order, the same fixed values.
    assert_eq!(
        keys(&ours_j),
        keys(&theirs_j),
        "\nPostfix: {theirs_j}\nposthorn: {ours_j}"
    );
    for fixed in [
        "\"queue_name\": \"deferred\"",
        "\"forced_expire\": false",
        "\"sender\": \"sender@example.org\"",
        "\"address\": \"alice@virt.test\"",
    ] {
        assert!(
            theirs_j.contains(fixed) && ours_j.contains(fixed),
            "{fixed}\nPostfix: {theirs_j}\nposthorn: {ours_j}"
        );
    }
}
