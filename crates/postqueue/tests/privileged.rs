//! Privileged mode (root only; CI runs as root): the queue belongs to mail_owner, an
//! ordinary user lists it through setgid postqueue and the showq daemon, and root still
//! lists it while the mail system is down (stand-alone showq).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use posthorn_testkit::{Instance, Mode, allow_config_dir, is_root, queue_id_for};

const T: Duration = Duration::from_secs(20);

/// Runs postqueue as `nobody` (not in setgid_group, cannot read the queue).
fn as_nobody(inst: &Instance, args: &[&str]) -> Output {
    let nobody = posthorn_sys::user_by_name("nobody").unwrap().unwrap();
    Command::new(inst.bin.join("postqueue"))
        .arg("-c")
        .arg(&inst.etc)
        .args(args)
        .uid(nobody.uid)
        .gid(nobody.gid)
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn users_list_through_showq_and_root_lists_while_the_system_is_down() {
    if !is_root() {
        eprintln!("SKIPPED: privileged mode needs root (CI runs it)");
        return;
    }
    let mut inst = Instance::with_mode(Mode::Privileged, "");
    inst.add_main_cf(&inst.virtual_cf("alice@virt.test=alice/"));
    inst.add_main_cf(
        "virtual_minimum_uid = 4000000000\n\
         minimal_backoff_time = 3600s\nmaximal_backoff_time = 3600s\nqueue_run_delay = 3600s\n",
    );
    let sp = inst.posthorn(&["set-permissions"]);
    assert!(sp.status.success(), "{}", text(&sp.stderr));
    let pq = fs::metadata(inst.bin.join("postqueue")).unwrap();
    assert_eq!(pq.mode() & 0o7777, 0o2755, "postqueue setgid");
    allow_config_dir(&inst.etc);
    inst.start();

    let out = inst.sendmail(
        &["-f", "s@example.org", "alice@virt.test"],
        "Subject: x\n\ny\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        inst.wait_until(T, || inst.queue_count("deferred") == 1),
        "log:\n{}",
        inst.log_text()
    );
    let id = queue_id_for(&inst.log_text(), "status=deferred");
    let deferred = fs::metadata(inst.queue.join("deferred")).unwrap();
    assert_eq!(
        deferred.mode() & 0o777,
        0o700,
        "only mail_owner reads the queue"
    );

    let o = as_nobody(&inst, &["-p"]);
    assert!(o.status.success(), "{o:?}\n{}", inst.log_text());
    let listing = text(&o.stdout);
    assert!(listing.contains(&format!("\n{id} ")), "{listing}");
    assert!(
        listing.contains("(mail system configuration error)"),
        "{listing}"
    );
    assert!(
        listing.ends_with("\n-- 0 Kbytes in 1 Request.\n"),
        "{listing}"
    );

    // A configuration directory of the user's own is not trusted by setgid postqueue.
    let other = inst.root().join("etc-other");
    fs::create_dir_all(&other).unwrap();
    fs::copy(inst.etc.join("main.cf"), other.join("main.cf")).unwrap();
    fs::set_permissions(&other, fs::Permissions::from_mode(0o755)).unwrap();
    let nobody = posthorn_sys::user_by_name("nobody").unwrap().unwrap();
    let o = Command::new(inst.bin.join("postqueue"))
        .args(["-p", "-c"])
        .arg(&other)
        .uid(nobody.uid)
        .gid(nobody.gid)
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(78), "{o:?}");
    assert!(
        text(&o.stderr).contains("not listed in alternate_config_directories"),
        "{o:?}"
    );

    inst.stop();
    let o = as_nobody(&inst, &["-p"]);
    assert_eq!(o.status.code(), Some(69), "{o:?}");
    assert!(
        text(&o.stderr).contains("Queue report unavailable - mail system is down"),
        "{o:?}"
    );
    // Root runs showq itself, which drops to mail_owner.
    let o = inst.command("postqueue").arg("-p").output().unwrap();
    assert!(o.status.success(), "{o:?}\n{}", inst.log_text());
    assert!(
        text(&o.stderr).contains(
            "postqueue: warning: Mail system is down -- accessing queue directly \
             (Connect to the posthorn showq service: "
        ),
        "{o:?}"
    );
    assert_eq!(text(&o.stdout), listing);
    let j = inst.command("postqueue").arg("-j").output().unwrap();
    assert!(j.status.success(), "{j:?}");
    assert!(text(&j.stdout).contains(&format!("\"queue_id\": \"{id}\"")));
}
