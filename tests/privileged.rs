//! Privileged mode (root only; CI runs as root): master as root, daemons as mail_owner,
//! postdrop setgid, sendmail run by an ordinary user, local delivery as the recipient, and
//! postdrop's refusal of an untrusted configuration directory.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use posthorn_testkit::{Instance, Mode, allow_config_dir, ensure_account, is_root};

const T: Duration = Duration::from_secs(20);

fn uid_of(pid: &str) -> Option<u32> {
    let st = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    st.lines()
        .find(|l| l.starts_with("Uid:"))?
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()
}

#[test]
fn privileged_instance_separates_privileges() {
    if !is_root() {
        eprintln!("SKIPPED: privileged mode needs root (CI runs it)");
        return;
    }
    let mut inst = Instance::with_mode(Mode::Privileged, "");
    let home = inst.root().join("home/phuser");
    ensure_account("phuser", Some(&home));
    let user = posthorn_sys::user_by_name("phuser").unwrap().unwrap();
    fs::create_dir_all(&user.home).unwrap();
    std::os::unix::fs::chown(&user.home, Some(user.uid), Some(user.gid)).unwrap();
    let owner = posthorn_sys::user_by_name("posthorn").unwrap().unwrap();

    // The unprivileged daemons run chrooted into the queue directory.
    let m = fs::read_to_string(inst.etc.join("master.cf")).unwrap();
    let m: String = m
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() >= 8 && ["pickup", "cleanup", "qmgr", "bounce"].contains(&f[0]) {
                let mut f = f.clone();
                f[4] = "y";
                f.join(" ")
            } else {
                l.to_string()
            }
        })
        .map(|l| l + "\n")
        .collect();
    fs::write(inst.etc.join("master.cf"), m).unwrap();
    let sp = inst.posthorn(&["set-permissions"]);
    assert!(
        sp.status.success(),
        "{}",
        String::from_utf8_lossy(&sp.stderr)
    );
    let pd = fs::metadata(inst.bin.join("postdrop")).unwrap();
    assert_eq!(pd.mode() & 0o7777, 0o2755, "postdrop setgid");
    assert_eq!(
        Some(pd.gid()),
        posthorn_sys::group_by_name("postdrop").unwrap()
    );
    let md = fs::metadata(inst.queue.join("maildrop")).unwrap();
    assert_eq!((md.uid(), md.mode() & 0o7777), (owner.uid, 0o730));
    let check = inst.posthorn(&["check"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(
        !String::from_utf8_lossy(&check.stderr).contains("set-permissions repairs"),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    allow_config_dir(&inst.etc);
    inst.start();

    // An ordinary user submits through setgid postdrop.
    let send = |dir: &Path, input: &str| {
        let mut c = Command::new(inst.bin.join("sendmail"));
        c.arg("-C")
            .arg(dir)
            .arg("phuser@localhost")
            .uid(user.uid)
            .gid(user.gid)
            .env_clear()
            .env("PATH", "/usr/bin:/bin");
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut ch = c.spawn().unwrap();
        use std::io::Write;
        ch.stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        ch.wait_with_output().unwrap()
    };
    let out = send(&inst.etc, "Subject: privileged\n\nhi\n");
    assert!(
        out.status.success(),
        "sendmail as phuser: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mbox = inst.mail.join("phuser");
    assert!(
        inst.wait_until(T, || fs::metadata(&mbox).is_ok_and(|m| m.len() > 0)),
        "log:\n{}",
        inst.log_text()
    );
    let m = fs::metadata(&mbox).unwrap();
    assert_eq!(m.uid(), user.uid, "mailbox written as the recipient");
    let text = fs::read_to_string(&mbox).unwrap();
    assert!(
        text.contains(&format!("(posthorn, from userid {})", user.uid)),
        "{text}"
    );
    assert!(text.contains("Subject: privileged"), "{text}");

    // Which processes run as whom.
    let pid = fs::read_to_string(inst.queue.join("pid/master.pid"))
        .unwrap()
        .trim()
        .to_string();
    let ps = Command::new("ps")
        .args(["-o", "pid=,comm=", "--ppid", &pid])
        .output()
        .unwrap();
    let ps = String::from_utf8_lossy(&ps.stdout);
    let mut seen = 0;
    for line in ps.lines() {
        let mut f = line.split_whitespace();
        let (Some(p), Some(comm)) = (f.next(), f.next()) else {
            continue;
        };
        let uid = uid_of(p);
        match comm {
            "cleanup" | "qmgr" | "pickup" => {
                assert_eq!(uid, Some(owner.uid), "{comm} runs as mail_owner");
                let root = fs::read_link(format!("/proc/{p}/root")).unwrap();
                assert_eq!(
                    root, inst.queue,
                    "{comm} is chrooted into the queue directory"
                );
                seen += 1;
            }
            "local" => assert_eq!(uid, Some(0), "local runs as root"),
            _ => {}
        }
    }
    assert!(seen >= 2, "daemons seen: {ps}");
    assert_eq!(uid_of(&pid), Some(0));

    // An unlisted configuration directory is refused by setgid postdrop.
    let other = inst.root().join("etc2");
    fs::create_dir_all(&other).unwrap();
    fs::copy(inst.etc.join("main.cf"), other.join("main.cf")).unwrap();
    fs::set_permissions(&other, fs::Permissions::from_mode(0o755)).unwrap();
    let out = send(&other, "Subject: nope\n\nx\n");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("alternate_config_directories"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    inst.stop();
}
