//! `kill -9` of the whole process tree while mail is being delivered loses no accepted
//! message: every message sendmail accepted (exit 0) is delivered after a restart.

use std::collections::HashSet;
use std::fs;
use std::time::Duration;

use posthorn_testkit::Instance;

#[test]
fn kill_9_of_the_whole_tree_loses_no_accepted_message() {
    let mut inst = Instance::new("");
    inst.add_main_cf(&inst.virtual_cf("alice@virt.test=alice/"));
    inst.start();
    let n = 40;
    let mut accepted = Vec::new();
    for i in 0..n {
        let subject = format!("crash-test-{i}");
        let out = inst.sendmail(
            &["alice@virt.test"],
            &format!("Subject: {subject}\n\nbody {i}\n"),
        );
        if out.status.success() {
            accepted.push(subject);
        }
        if i == n / 2 {
            // Mid-stream: kill master and every daemon at once (they share master's process group).
            let pid: i32 = fs::read_to_string(inst.queue.join("pid/master.pid"))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            assert!(pid > 1, "master pid {pid}");
            let pgrp = nix::unistd::Pid::from_raw(pid);
            nix::sys::signal::killpg(pgrp, nix::sys::signal::Signal::SIGKILL).unwrap();
            inst.forget_started();
            std::thread::sleep(Duration::from_millis(200));
            // With the MTA down, sendmail still accepts mail into maildrop/.
        }
    }
    assert_eq!(
        accepted.len(),
        n,
        "sendmail accepts mail even while the MTA is down"
    );
    inst.start();
    let md = inst.mail.join("alice");
    let all_in = inst.wait_until(Duration::from_secs(60), || {
        let got: HashSet<String> = inst
            .maildir(&md)
            .iter()
            .filter_map(|(_, c)| {
                String::from_utf8_lossy(c)
                    .lines()
                    .find(|l| l.starts_with("Subject: "))
                    .map(|l| l[9..].to_string())
            })
            .collect();
        accepted.iter().all(|s| got.contains(s))
    });
    assert!(
        all_in,
        "missing messages after restart; log:\n{}",
        inst.log_text()
    );
    assert!(
        inst.wait_until(Duration::from_secs(20), || inst.queue_empty()),
        "queue not empty"
    );
    inst.stop();
}
