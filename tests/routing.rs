//! Address resolution end to end (posthorn-resolve in qmgr): transport_maps with the
//! built-in error:, retry: and discard: transports, and delay_warning_time notices.

use std::time::Duration;

use posthorn_testkit::{Instance, queue_id_for};

const T: Duration = Duration::from_secs(20);

fn me(inst: &Instance) -> String {
    format!("{}@mail.example.test", inst.user())
}

/// Submits `message` from the instance user to `to` with `sendmail -f`.
#[track_caller]
fn submit(inst: &Instance, to: &[&str], message: &str) {
    let me = me(inst);
    let mut args = vec!["-f", me.as_str()];
    args.extend_from_slice(to);
    let out = inst.sendmail(&args, message);
    assert!(out.status.success(), "{out:?}");
}

/// Waits until the log shows `wait_for`; returns the first log line with `line_with`.
#[track_caller]
fn logged(inst: &Instance, wait_for: &str, line_with: &str) -> String {
    inst.expect_log(wait_for, T);
    inst.log_line(line_with)
}

#[test]
fn transport_maps_route_to_error_and_discard() {
    let mut inst = Instance::new(
        "transport_maps = inline:{ {bad.test=error:5.1.2 no such domain here}, {.gone.test=discard:dropped on purpose} }\n",
    );
    inst.start();
    submit(&inst, &["x@bad.test"], "Subject: to bad\n\nbody\n");
    submit(&inst, &["y@sub.gone.test"], "Subject: to gone\n\nbody\n");
    let bad = logged(
        &inst,
        "to=<x@bad.test>, relay=none, delay=",
        "to=<x@bad.test>",
    );
    assert!(
        bad.contains("dsn=5.1.2, status=bounced (no such domain here)"),
        "{bad}"
    );
    let gone = logged(&inst, "to=<y@sub.gone.test>", "to=<y@sub.gone.test>");
    assert!(
        gone.contains("relay=none") && gone.contains("dsn=2.0.0, status=sent (dropped on purpose)"),
        "{gone}"
    );
    // The bounce comes back to the sender.
    let mbox = inst.mail.join(inst.user());
    let notice = inst.wait_for_text(&mbox, "no such domain here");
    assert!(
        notice.contains("Undelivered Mail Returned to Sender"),
        "{notice}"
    );
}

#[test]
fn delay_warning_is_sent_once() {
    let mut inst = Instance::new(
        "transport_maps = inline:{ {slow.test=retry:4.4.1 the destination is slow} }\n\
         delay_warning_time = 1s\n",
    );
    inst.start();
    submit(&inst, &["z@slow.test"], "Subject: slow\n\nbody\n");
    let log = inst.wait_for_text(&inst.log, "status=deferred (the destination is slow)");
    let id = queue_id_for(&log, "to=<z@slow.test>");
    let mbox = inst.mail.join(inst.user());
    let notice = inst.wait_for_text(&mbox, "Delayed Mail (still being retried)");
    assert!(notice.contains("the destination is slow"), "{notice}");
    assert!(notice.contains("Action: delayed"), "{notice}");
    // More retries, no second warning.
    let deadline = std::time::Instant::now() + Duration::from_secs(4);
    while std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let text = posthorn_testkit::read_text(&mbox);
    assert_eq!(
        text.matches("Delayed Mail (still being retried)").count(),
        1,
        "{text}"
    );
    let log = posthorn_testkit::read_text(&inst.log);
    assert!(
        log.matches(&format!("{id}: to=<z@slow.test>")).count() >= 2,
        "retried: {log}"
    );
}

#[test]
fn virtual_aliases_are_expanded_in_cleanup() {
    let user = {
        let probe = Instance::new("");
        probe.user()
    };
    let mut inst = Instance::new(&format!(
        "virtual_alias_domains = valias.test\n\
         virtual_alias_maps = inline:{{ {{info@valias.test=sales@valias.test}}, {{sales@valias.test={user}@mail.example.test}} }}\n"
    ));
    inst.start();
    submit(
        &inst,
        &["info@valias.test", "nobody@valias.test"],
        "Subject: via alias\n\nhello alias\n",
    );
    let mbox = inst.mail.join(inst.user());
    inst.wait_for_text(&mbox, "hello alias");
    // The unknown address of an alias domain is returned (trivial-rewrite's error route).
    let notice = inst.wait_for_text(&mbox, "User unknown in virtual alias table");
    assert!(notice.contains("nobody@valias.test"), "{notice}");
}

#[test]
fn too_many_received_headers_is_a_loop() {
    let mut inst = Instance::new("hopcount_limit = 5\n");
    inst.start();
    let mut c = posthorn_testkit::smtp::Client::connect(inst.smtp_port);
    c.expect("EHLO client.test", 250);
    c.expect("MAIL FROM:<a@example.org>", 250);
    c.expect(&format!("RCPT TO:<{}>", me(&inst)), 250);
    let hops: String = (0..6)
        .map(|i| {
            format!(
                "Received: from hop{i}.test by hop{}.test; Wed, 25 Nov 2026 10:00:00 +0000\r\n",
                i + 1
            )
        })
        .collect();
    let r = c.data(&format!("{hops}Subject: loop\r\n\r\nround and round\r\n"));
    assert_eq!(r.code, 554, "{}", r.wire());
    assert!(
        r.text().contains("5.4.6") && r.text().contains("too many hops"),
        "{}",
        r.wire()
    );
    // Within the limit it is fine.
    c.expect("MAIL FROM:<a@example.org>", 250);
    c.expect(&format!("RCPT TO:<{}>", me(&inst)), 250);
    let hops: String = hops.lines().take(4).map(|l| format!("{l}\r\n")).collect();
    let r = c.data(&format!("{hops}Subject: fine\r\n\r\nonce\r\n"));
    assert_eq!(r.code, 250, "{}", r.wire());
}

#[test]
fn a_server_with_our_own_name_is_a_loop() {
    // Both instances call themselves mail.example.test: relaying from one to the other
    // would loop in a real deployment (an MX pointing back at us).
    let mut receiver = Instance::new("");
    receiver.start();
    let mut sender = Instance::new(&format!(
        "transport_maps = inline:{{ {{loop.test=smtp:[127.0.0.1]:{}}} }}\n",
        receiver.smtp_port
    ));
    sender.start();
    submit(&sender, &["x@loop.test"], "Subject: loop\n\nbody\n");
    let line = logged(&sender, "to=<x@loop.test>", "to=<x@loop.test>");
    assert!(
        line.contains("dsn=5.4.6, status=bounced (mail for 127.0.0.1 loops back to myself)"),
        "{line}"
    );
}
