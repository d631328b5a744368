//! The control command and master: start/stop/status, a second start refused, a crashing
//! daemon throttled instead of respawned in a loop, damaged queue files quarantined.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use posthorn_testkit::Instance;

const T: Duration = Duration::from_secs(20);

#[test]
fn start_status_second_start_and_stop() {
    let mut inst = Instance::new("");
    let st = inst.posthorn(&["status"]);
    assert_eq!(st.status.code(), Some(1));
    inst.start();
    let st = inst.posthorn(&["status"]);
    assert!(st.status.success());
    assert!(String::from_utf8_lossy(&st.stderr).contains("is running: PID: "));
    let again = inst.posthorn(&["start"]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already running"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    inst.expect_log("daemon started -- version", T);
    // Make sure daemons are running, then stop: no process of the instance may remain.
    let out = inst.posthorn(&["flush"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    inst.stop();
    let left = std::process::Command::new("pgrep")
        .arg("-f")
        .arg(inst.etc.to_str().unwrap())
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "processes left: {}",
        String::from_utf8_lossy(&left.stdout)
    );
    assert_eq!(inst.posthorn(&["status"]).status.code(), Some(1));
}

#[test]
fn check_reports_config_errors_with_file_and_line() {
    let inst = Instance::new("this line has no equals sign\n");
    let out = inst.posthorn(&["check"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("main.cf") && err.contains(":19"), "{err}");
    let inst = Instance::new("no_such_parameter_xyz = 1\n");
    let out = inst.posthorn(&["check"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown parameter") && err.contains("no_such_parameter_xyz"),
        "{err}"
    );
    assert!(
        inst.queue.join("maildrop").is_dir(),
        "check creates the queue tree"
    );
}

#[test]
fn crashing_daemon_is_throttled_not_respawned_in_a_loop() {
    let mut inst = Instance::new("");
    let crash = inst.write_file("crash.sh", "#!/bin/sh\nexit 1\n");
    fs::set_permissions(&crash, fs::Permissions::from_mode(0o755)).unwrap();
    let mut m = fs::read_to_string(inst.etc.join("master.cf")).unwrap();
    m.push_str(&format!("crashy unix - - n 1 1 {}\n", crash.display()));
    fs::write(inst.etc.join("master.cf"), m).unwrap();
    inst.chown_all();
    inst.start();
    inst.expect_log("bad command startup -- throttling", T);
    std::thread::sleep(Duration::from_secs(4));
    let log = inst.log_text();
    let starts = log.matches("crash.sh: bad command startup").count();
    // Wakeups every second, throttle doubling from 1 s (capped at 2 s here): a handful of
    // attempts in ~5 seconds, never a loop.
    assert!((1..=6).contains(&starts), "{starts} restarts:\n{log}");
    inst.stop();
}

#[test]
fn damaged_queue_file_is_quarantined() {
    let mut inst = Instance::new("");
    inst.start();
    // A complete-looking file (mode 0700) with garbage in it, named like a queue file.
    let id = posthorn_queue::QueueId::new(std::time::SystemTime::now(), 424_242);
    let p = inst.queue.join("incoming").join(id.as_str());
    fs::write(&p, b"not a queue file at all").unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o700)).unwrap();
    inst.chown_all();
    let _ = inst.posthorn(&["flush"]);
    assert!(
        inst.wait_until(T, || inst.queue.join("corrupt").join(id.as_str()).exists()),
        "log:\n{}",
        inst.log_text()
    );
    inst.expect_log("corrupt queue file", T);
    inst.stop();
}
