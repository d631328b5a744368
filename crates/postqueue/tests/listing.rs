//! postqueue end to end: a deferred message listed by `postqueue -p` / `-j` (through the
//! showq daemon), the same listing from `mailq` and `sendmail -bp`, flushes that make qmgr
//! retry, and the diagnostics when the mail system is down.
//!
//! Needs the workspace built (`cargo build --workspace`; scripts/test does it).

use std::process::{Output, Stdio};
use std::time::Duration;

use posthorn_testkit::{Instance, queue_id_for};

const T: Duration = Duration::from_secs(20);

/// Runs `program ARGS` as the instance's user.
fn run(inst: &Instance, program: &str, args: &[&str]) -> Output {
    inst.command(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The text in parentheses at the end of the first log line with `needle`.
fn reason_in(line: &str) -> String {
    let start = line.find(" (").expect("reason") + 2;
    line[start..].trim_end().trim_end_matches(')').to_string()
}

fn deferred_count(inst: &Instance) -> usize {
    inst.log_text().matches("status=deferred").count()
}

#[test]
fn deferred_mail_is_listed_with_its_reason_and_flushed_on_request() {
    let mut inst = Instance::new("");
    inst.add_main_cf(&inst.virtual_cf("alice@virt.test=alice/, bob@virt.test=bob/"));
    // A uid below virtual_minimum_uid defers; no retry unless asked for.
    inst.add_main_cf(
        "virtual_minimum_uid = 4000000000\n\
         minimal_backoff_time = 3600s\nmaximal_backoff_time = 3600s\nqueue_run_delay = 3600s\n",
    );
    inst.start();

    let empty = run(&inst, "postqueue", &["-p"]);
    assert!(empty.status.success(), "{empty:?}\n{}", inst.log_text());
    assert_eq!(stdout(&empty), "Mail queue is empty\n");
    let empty = run(&inst, "postqueue", &["-j"]);
    assert!(empty.status.success(), "{empty:?}");
    assert_eq!(stdout(&empty), "");

    let out = inst.sendmail(
        &[
            "-f",
            "sender@example.org",
            "alice@virt.test",
            "bob@virt.test",
        ],
        "Subject: later\n\nsome text\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        inst.wait_until(T, || deferred_count(&inst) == 2
            && inst.queue_count("deferred") == 1),
        "log:\n{}",
        inst.log_text()
    );
    let log = inst.log_text();
    let id = queue_id_for(&log, "status=deferred");
    let reason = reason_in(&inst.log_line("to=<alice@virt.test>"));
    assert_eq!(reason_in(&inst.log_line("to=<bob@virt.test>")), reason);

    // postqueue -p: Postfix's layout, the reason right-aligned above both recipients.
    let p = run(&inst, "postqueue", &["-p"]);
    assert!(p.status.success(), "{p:?}");
    let text = stdout(&p);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0], "----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------",
        "{text}"
    );
    let head: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(head[0], id, "not active, not held: no mark\n{text}");
    let size: u64 = head[1].parse().unwrap();
    assert!(size > 20, "{text}");
    assert_eq!(head.len(), 7, "{text}"); // ID size Day Mon dd hh:mm:ss sender
    assert_eq!(head[6], "sender@example.org");
    assert_eq!(&lines[1][..18], format!("{id:<17} "), "{text}");
    let shown = format!("({reason})");
    assert_eq!(
        lines[2],
        format!("{}{shown}", " ".repeat(78usize.saturating_sub(shown.len()))),
        "{text}"
    );
    assert_eq!(lines[3], format!("{}alice@virt.test", " ".repeat(47)));
    assert_eq!(lines[4], format!("{}bob@virt.test", " ".repeat(47)));
    assert_eq!(&lines[5..], ["", "-- 0 Kbytes in 1 Request."], "{text}");

    // mailq and sendmail -bp are postqueue -p.
    for (program, args) in [("mailq", &[][..]), ("sendmail", &["-bp"][..])] {
        let o = run(&inst, program, args);
        assert!(o.status.success(), "{program}: {o:?}");
        assert_eq!(stdout(&o), text, "{program} {args:?}");
    }

    // postqueue -j: one JSON object, Postfix's members in Postfix's order.
    let j = run(&inst, "postqueue", &["-j"]);
    assert!(j.status.success(), "{j:?}");
    let json = stdout(&j);
    assert_eq!(json.lines().count(), 1, "{json}");
    assert!(
        json.starts_with(&format!(
            "{{\"queue_name\": \"deferred\", \"queue_id\": \"{id}\", \"arrival_time\": "
        )),
        "{json}"
    );
    let v: serde_json::Value = serde_json::from_str(json.trim_end()).unwrap();
    assert_eq!(v["message_size"], size);
    assert_eq!(v["forced_expire"], false);
    assert_eq!(v["sender"], "sender@example.org");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let arrival = v["arrival_time"].as_u64().unwrap();
    assert!(arrival <= now && now - arrival < 120, "{json}");
    assert_eq!(
        v["recipients"],
        serde_json::json!([
            {"address": "alice@virt.test", "delay_reason": reason},
            {"address": "bob@virt.test", "delay_reason": reason},
        ])
    );

    // -f, -i and -s make qmgr retry at once (backoff and queue_run_delay are an hour).
    for args in [&["-f"][..], &["-i", &id][..], &["-s", "virt.test"][..]] {
        let before = deferred_count(&inst);
        let f = run(&inst, "postqueue", args);
        assert!(f.status.success(), "{args:?}: {f:?}");
        assert!(
            inst.wait_until(T, || deferred_count(&inst) >= before + 2),
            "no retry after postqueue {args:?}; log:\n{}",
            inst.log_text()
        );
        assert!(inst.wait_until(T, || inst.queue_count("deferred") == 1));
    }
    let bad = run(&inst, "postqueue", &["-s", "bad..site"]);
    assert_eq!(bad.status.code(), Some(64), "{bad:?}");
    assert!(
        stderr(&bad).contains(
            "postqueue: fatal: Cannot flush mail queue - invalid destination: \"bad..site\""
        ),
        "{bad:?}"
    );
    let bad = run(&inst, "postqueue", &["-i", "nosuchid"]);
    assert_eq!(bad.status.code(), Some(64), "{bad:?}");
    let usage = run(&inst, "postqueue", &["-p", "-j"]);
    assert_eq!(usage.status.code(), Some(64), "{usage:?}");
    assert!(
        stderr(&usage).contains("usage: postqueue -f |"),
        "{usage:?}"
    );

    // Mail system down: no listing (the user may not read the queue), no flush.
    inst.stop();
    for (program, args) in [("postqueue", &["-p"][..]), ("mailq", &[][..])] {
        let o = run(&inst, program, args);
        assert_eq!(o.status.code(), Some(69), "{program}: {o:?}");
        assert!(
            stderr(&o).contains(
                "postqueue: fatal: Queue report unavailable - mail system is down \
                 (Connect to the posthorn showq service: "
            ),
            "{program}: {o:?}"
        );
        assert_eq!(stdout(&o), "");
    }
    let f = run(&inst, "postqueue", &["-f"]);
    assert_eq!(f.status.code(), Some(69), "{f:?}");
    assert!(
        stderr(&f).contains("postqueue: fatal: Cannot flush mail queue - mail system is down"),
        "{f:?}"
    );
}

#[test]
fn authorized_mailq_users_is_enforced() {
    let mut inst = Instance::new("");
    inst.add_main_cf(
        "authorized_mailq_users = root\nauthorized_flush_users = !nobody, static:anyone\n",
    );
    inst.start();
    let me = inst.user();
    let o = run(&inst, "postqueue", &["-p"]);
    // The instance's user is not mail_owner (posthorn) and not root.
    assert_eq!(o.status.code(), Some(77), "{o:?}");
    assert!(
        stderr(&o).contains(&format!(
            "postqueue: fatal: User {me}({}) is not allowed to view the mail queue",
            inst.uid()
        )),
        "{o:?}"
    );
    let f = run(&inst, "postqueue", &["-f"]);
    if me == "nobody" {
        assert_eq!(f.status.code(), Some(77), "{f:?}");
        assert!(stderr(&f).contains("is not allowed to flush the mail queue"));
    } else {
        assert!(f.status.success(), "{f:?}");
    }
    inst.stop();
}
