//! The administrator's tools against a running instance: mail queued for a destination
//! that keeps failing is listed (`postqueue -p`, `-j`), held and released, deleted,
//! requeued and flushed (`postsuper`, `postqueue -f`), and shown (`postcat`); `postconf`
//! and `postmap` on the instance's own files. Every result is checked twice: through the
//! queue directories (which file is where, under its queue ID; defer logs) and through the
//! listing the tools themselves give. Also: postsuper against a message qmgr is
//! delivering, `postqueue -i`/`-s`, and `postsuper -h ALL` racing a flush.
//!
//! The failing destination is a virtual Maildir whose uid is below `virtual_minimum_uid`,
//! so virtual(8) defers each delivery (4.3.5, "mail system configuration error"). Retry
//! times are 300 s, so a deferred message stays in `deferred/` until a tool moves it.
//! The instances run unprivileged (as `nobody` when the tests run as root).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use posthorn_testkit::{Instance, queue_id_for, read_text};

const T: Duration = Duration::from_secs(20);

/// The envelope sender of every test message.
const SENDER: &str = "sender@example.org";

/// The reason virtual(8) gives for each deferral here.
const REASON: &str = "mail system configuration error";

/// The queues a message file can be in.
const MESSAGE_QUEUES: [&str; 7] = [
    "maildrop", "incoming", "active", "deferred", "hold", "corrupt", "saved",
];

/// The time zone the tools run in: five hours west of UTC, no summer time, so arrival
/// times can be checked against the epoch seconds of `postqueue -j`.
const TZ: &str = "EST5";

/// The zone's offset from UTC in seconds.
const TZ_OFFSET: i64 = -5 * 3600;

/// A started instance whose virtual deliveries to `alice@virt.test` and `bob@virt.test`
/// defer, with retry times long enough that nothing is retried unless a tool asks.
fn deferring_instance() -> Instance {
    deferring_instance_with("")
}

/// [`deferring_instance`] with `extra` main.cf lines.
fn deferring_instance_with(extra: &str) -> Instance {
    let mut inst = Instance::new(extra);
    let mut v = inst.virtual_cf("alice@virt.test=alice/, bob@virt.test=bob/");
    v.push_str("virtual_minimum_uid = 4000000000\n");
    inst.add_main_cf(&v);
    inst.add_main_cf(
        "queue_run_delay = 300s\nminimal_backoff_time = 300s\nmaximal_backoff_time = 300s\n",
    );
    inst.start();
    inst
}

/// A message with the headers cleanup would otherwise add, and `body`.
fn message_with_body(tag: &str, body: &str) -> String {
    format!(
        "Subject: tools {tag}\nFrom: Sender <{SENDER}>\nTo: alice@virt.test\n\
         Message-ID: <{tag}@example.org>\nDate: Wed, 25 Nov 2026 10:00:00 +0000\n\n{body}"
    )
}

/// Sends message `tag` to `rcpts` and waits until it is deferred: every recipient's
/// result logged, the file in `deferred/` only, its defer log written. Returns its ID.
fn send_deferred(inst: &Instance, tag: &str, rcpts: &[&str]) -> String {
    send_deferred_body(inst, tag, rcpts, &format!("body of {tag}\n"))
}

/// [`send_deferred`] with `body`.
fn send_deferred_body(inst: &Instance, tag: &str, rcpts: &[&str], body: &str) -> String {
    let mut args = vec!["-f", SENDER];
    args.extend_from_slice(rcpts);
    let out = inst.sendmail(&args, &message_with_body(tag, body));
    assert!(
        out.status.success(),
        "sendmail: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let needle = format!("message-id=<{tag}@example.org>");
    inst.log_line(&needle);
    let qid = queue_id_for(&inst.log_text(), &needle);
    for r in rcpts {
        let want = format!("{qid}: to=<{r}>, relay=");
        let ok = inst.wait_until(T, || {
            inst.log_text()
                .lines()
                .any(|l| l.contains(&want) && l.contains(", status="))
        });
        assert!(ok, "no result for {r}; log:\n{}", inst.log_text());
    }
    wait_in(inst, &qid, "deferred");
    let ok = inst.wait_until(T, || find_file(inst, "defer", &qid).is_some());
    assert!(ok, "no defer log for {qid}; log:\n{}", inst.log_text());
    qid
}

/// The file named `id` in queue directory `queue` (any hash level).
fn find_file(inst: &Instance, queue: &str, id: &str) -> Option<PathBuf> {
    fn walk(p: &Path, id: &str) -> Option<PathBuf> {
        for e in fs::read_dir(p).ok()?.flatten() {
            let path = e.path();
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                if let Some(f) = walk(&path, id) {
                    return Some(f);
                }
            } else if e.file_name().to_string_lossy() == id {
                return Some(path);
            }
        }
        None
    }
    walk(&inst.queue.join(queue), id)
}

/// The message queues that hold a file named `id`.
fn queues_of(inst: &Instance, id: &str) -> Vec<&'static str> {
    MESSAGE_QUEUES
        .into_iter()
        .filter(|q| find_file(inst, q, id).is_some())
        .collect()
}

/// Waits until message `id` is in `queue` and in no other queue.
fn wait_in(inst: &Instance, id: &str, queue: &str) {
    let ok = inst.wait_until(T, || queues_of(inst, id) == [queue]);
    assert!(
        ok,
        "{id} is in {:?}, not only in {queue}; log:\n{}",
        queues_of(inst, id),
        inst.log_text()
    );
}

/// Runs tool `name` with `args` (standard input empty); postqueue and postcat in [`TZ`].
fn tool(inst: &Instance, name: &str, args: &[&str]) -> Output {
    tool_stdin(inst, name, args, "")
}

/// Runs tool `name` with `args` and `input` on standard input; postqueue and postcat in
/// [`TZ`].
fn tool_stdin(inst: &Instance, name: &str, args: &[&str], input: &str) -> Output {
    use std::io::Write;
    let mut cmd = inst.command(name);
    if matches!(name, "postqueue" | "postcat") {
        cmd.env("TZ", TZ);
    }
    let mut child = cmd
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {name}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let data = input.as_bytes().to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    let _ = writer.join();
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("panicked"),
        "{name} {args:?} panicked: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A tool's output as text: (exit code, stdout, stderr).
fn text(out: &Output) -> (Option<i32>, String, String) {
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs tool `name` with `args`; panics unless it exits 0. Returns (stdout, stderr).
fn ok(inst: &Instance, name: &str, args: &[&str]) -> (String, String) {
    ok_stdin(inst, name, args, "")
}

/// [`ok`] with `input` on standard input.
fn ok_stdin(inst: &Instance, name: &str, args: &[&str], input: &str) -> (String, String) {
    let (code, out, err) = text(&tool_stdin(inst, name, args, input));
    assert_eq!(
        code,
        Some(0),
        "{name} {args:?} failed\nstdout:\n{out}\nstderr:\n{err}\nlog:\n{}",
        inst.log_text()
    );
    (out, err)
}

/// `postqueue -p`'s output.
fn mailq(inst: &Instance) -> String {
    ok(inst, "postqueue", &["-p"]).0
}

/// `postqueue -j`'s output, one entry per line.
fn mailq_json(inst: &Instance) -> Vec<String> {
    ok(inst, "postqueue", &["-j"])
        .0
        .lines()
        .map(str::to_string)
        .collect()
}

/// The `-j` line of message `id`; panics unless there is exactly one.
fn json_of(lines: &[String], id: &str) -> String {
    let key = format!("\"queue_id\": \"{id}\"");
    let found: Vec<&String> = lines.iter().filter(|l| l.contains(&key)).collect();
    assert_eq!(found.len(), 1, "{id} not listed once by -j: {lines:#?}");
    found[0].clone()
}

/// The `-p` line of message `id` (the ID column: the ID and its status marks).
fn mailq_line(listing: &str, id: &str) -> String {
    let found: Vec<&str> = listing
        .lines()
        .filter(|l| l.split(' ').next().is_some_and(|c| c.starts_with(id)))
        .collect();
    assert_eq!(found.len(), 1, "{id} not listed once by -p:\n{listing}");
    found[0].to_string()
}

/// The status marks `postqueue -p` puts after message `id`'s queue ID (`*` active, `!`
/// on hold, `#` forced to expire): "" for a message simply waiting in the queue.
fn marks(listing: &str, id: &str) -> String {
    let line = mailq_line(listing, id);
    line.split(' ').next().unwrap_or_default()[id.len()..].to_string()
}

/// A queue ID of valid syntax that differs from `id` (in its last character).
fn other_id(id: &str) -> String {
    let last = if id.ends_with('X') { 'Y' } else { 'X' };
    format!("{}{last}", &id[..id.len() - 1])
}

/// The number of deliveries to `rcpt` of message `id` attempted (and deferred) so far.
fn attempts(inst: &Instance, id: &str, rcpt: &str) -> usize {
    let head = format!("{id}: to=<{rcpt}>, relay=");
    inst.log_text()
        .lines()
        .filter(|l| l.contains(&head) && l.contains("status=deferred"))
        .count()
}

/// Waits until message `id` has been attempted `n` times for alice and is back in
/// `deferred/`.
fn wait_attempts(inst: &Instance, id: &str, n: usize) {
    wait_attempts_for(inst, id, "alice@virt.test", n);
}

/// Waits until message `id` has been attempted `n` times for `rcpt` and is back in
/// `deferred/`.
fn wait_attempts_for(inst: &Instance, id: &str, rcpt: &str, n: usize) {
    let ok = inst.wait_until(T, || attempts(inst, id, rcpt) >= n);
    assert!(
        ok,
        "{id}: {} attempts for {rcpt}, expected {n}; log:\n{}",
        attempts(inst, id, rcpt),
        inst.log_text()
    );
    wait_in(inst, id, "deferred");
    assert_eq!(attempts(inst, id, rcpt), n, "{}", inst.log_text());
}

/// The log lines of program `prog` (e.g. `postsuper`).
fn log_of(inst: &Instance, prog: &str) -> Vec<String> {
    let tag = format!("posthorn/{prog}[");
    inst.log_text()
        .lines()
        .filter(|l| l.contains(&tag))
        .map(|l| l.split("]: ").nth(1).unwrap_or_default().to_string())
        .collect()
}

/// `asctime()` of Unix time `t` in [`TZ`], cut to 19 characters as `postqueue -p` shows
/// it: `Wed Nov 25 17:19:27`.
fn asctime19(t: i64) -> String {
    let local = t + TZ_OFFSET;
    let (days, secs) = (local.div_euclid(86_400), local.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    const WD: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{} {}{day:>3} {:02}:{:02}:{:02}",
        WD[usize::try_from((days + 4).rem_euclid(7)).unwrap()],
        MON[usize::try_from(month - 1).unwrap()],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The number after `"key": ` in a `-j` line.
fn json_number(line: &str, key: &str) -> i64 {
    let pat = format!("\"{key}\": ");
    let at = line
        .find(&pat)
        .unwrap_or_else(|| panic!("no {key} in {line}"))
        + pat.len();
    line[at..]
        .split([',', '}'])
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{key} in {line}: {e}"))
}

/// Seconds since the epoch now.
fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// Sleeps `ms` milliseconds.
fn pause(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

#[test]
fn deferred_message_is_listed_by_postqueue_p_and_j() {
    // soft_bounce: an unknown local user is deferred too, with its own reason.
    let mut inst = deferring_instance_with("soft_bounce = yes\n");
    let before = now();
    let qid = send_deferred(&inst, "listed", &["alice@virt.test", "bob@virt.test"]);
    let after = now();
    assert_eq!(inst.queue_count("deferred"), 1);
    assert_eq!(inst.queue_count("defer"), 1);

    // postcat gives the size record's content length, which both listings show.
    let (cat, _) = ok(&inst, "postcat", &["-e", "-q", &qid]);
    let size: u64 = cat
        .lines()
        .find_map(|l| l.strip_prefix("message_size:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no message_size in:\n{cat}"));
    assert!(size > 200 && size < 1024, "{size}");

    // -j: one line, Postfix's members in Postfix's order.
    let json = mailq_json(&inst);
    assert_eq!(json.len(), 1, "{json:#?}");
    let line = &json[0];
    let head =
        format!("{{\"queue_name\": \"deferred\", \"queue_id\": \"{qid}\", \"arrival_time\": ");
    assert!(line.starts_with(&head), "{line}");
    let arrival = json_number(line, "arrival_time");
    assert!(
        (before..=after).contains(&arrival),
        "arrival {arrival} not in {before}..={after}"
    );
    assert_eq!(
        json_number(line, "message_size"),
        i64::try_from(size).unwrap()
    );
    let tail = format!(
        ", \"message_size\": {size}, \"forced_expire\": false, \"sender\": \"{SENDER}\", \
         \"recipients\": [{{\"address\": \"alice@virt.test\", \"delay_reason\": \"{REASON}\"}}, \
         {{\"address\": \"bob@virt.test\", \"delay_reason\": \"{REASON}\"}}]}}"
    );
    assert!(line.ends_with(&tail), "want ...{tail}\n got {line}");

    // -p: heading, message line, the shared reason once, both recipients, trailer.
    let listing = mailq(&inst);
    let pad = " ".repeat(47);
    let want = format!(
        "----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------\n\
         {qid:<17} {size:>8} {} {SENDER}\n\
         {:>78}\n\
         {pad}alice@virt.test\n\
         {pad}bob@virt.test\n\
         \n\
         -- 0 Kbytes in 1 Request.\n",
        asctime19(arrival),
        format!("({REASON})"),
    );
    assert_eq!(listing, want);
    assert_eq!(
        mailq_line(&listing, &qid),
        format!("{qid:<17} {size:>8} {} {SENDER}", asctime19(arrival))
    );

    // postcat shows the same arrival time, with the year.
    assert!(
        cat.contains(&format!("\nmessage_arrival_time: {} ", asctime19(arrival))),
        "{cat}"
    );
    // Listing changed nothing.
    assert_eq!(queues_of(&inst, &qid), ["deferred"]);
    assert!(find_file(&inst, "defer", &qid).is_some());

    // A second, larger message whose recipients fail for different reasons: a reason
    // line whenever the reason changes, recipients in queue file order.
    let body = "a line of a three kilobyte body ..............................\n".repeat(50);
    let rcpts = ["alice@virt.test", "nosuchuser@localhost", "bob@virt.test"];
    let qid2 = send_deferred_body(&inst, "listed-2", &rcpts, &body);
    let json = mailq_json(&inst);
    assert_eq!(json.len(), 2, "{json:#?}");
    let line2 = json_of(&json, &qid2);
    let size2 = json_number(&line2, "message_size");
    assert!(size2 > 3000, "{line2}");
    let unknown = "unknown user: \"nosuchuser\"";
    let tail = format!(
        "\"recipients\": [{{\"address\": \"alice@virt.test\", \"delay_reason\": \"{REASON}\"}}, \
         {{\"address\": \"nosuchuser@localhost\", \"delay_reason\": \"unknown user: \\\"nosuchuser\\\"\"}}, \
         {{\"address\": \"bob@virt.test\", \"delay_reason\": \"{REASON}\"}}]}}"
    );
    assert!(line2.ends_with(&tail), "want ...{tail}\n got {line2}");
    assert_eq!(json_of(&json, &qid), *line, "the first message changed");
    let listing = mailq(&inst);
    let block = format!(
        "\n{qid2:<17} {size2:>8} {} {SENDER}\n\
         {:>78}\n\
         {pad}alice@virt.test\n\
         {:>78}\n\
         {pad}nosuchuser@localhost\n\
         {:>78}\n\
         {pad}bob@virt.test\n",
        asctime19(json_number(&line2, "arrival_time")),
        format!("({REASON})"),
        format!("({unknown})"),
        format!("({REASON})"),
    );
    assert!(listing.contains(&block), "want\n{block}\nin\n{listing}");
    let kb = (i64::try_from(size).unwrap() + size2) / 1024;
    assert!(
        listing.ends_with(&format!("\n\n-- {kb} Kbytes in 2 Requests.\n")),
        "{listing}"
    );
    assert_eq!(
        (inst.queue_count("deferred"), inst.queue_count("defer")),
        (2, 2)
    );
    inst.stop();
}

#[test]
fn hold_and_release_by_id_and_all() {
    let mut inst = deferring_instance();
    let a = send_deferred(&inst, "hold-a", &["alice@virt.test"]);
    let b = send_deferred(&inst, "hold-b", &["alice@virt.test"]);

    // -h ID: into hold/, marked `!`, listed as queue "hold"; the other stays deferred.
    let (_, err) = ok(&inst, "postsuper", &["-h", &a]);
    assert_eq!(
        err,
        format!("postsuper: {a}: placed on hold\npostsuper: Placed on hold: 1 message\n")
    );
    assert_eq!(queues_of(&inst, &a), ["hold"]);
    assert_eq!(queues_of(&inst, &b), ["deferred"]);
    assert_eq!(
        (inst.queue_count("hold"), inst.queue_count("deferred")),
        (1, 1)
    );
    let listing = mailq(&inst);
    assert_eq!(marks(&listing, &a), "!", "{listing}");
    assert_eq!(marks(&listing, &b), "", "{listing}");
    assert!(
        listing.ends_with("\n-- 0 Kbytes in 2 Requests.\n"),
        "{listing}"
    );
    let json = mailq_json(&inst);
    assert!(
        json_of(&json, &a).starts_with("{\"queue_name\": \"hold\", "),
        "{json:#?}"
    );
    assert!(
        json_of(&json, &b).starts_with("{\"queue_name\": \"deferred\", "),
        "{json:#?}"
    );
    assert!(
        log_of(&inst, "postsuper").contains(&format!("{a}: placed on hold")),
        "{}",
        inst.log_text()
    );
    // A flush does not touch held mail (b is retried, a is not).
    ok(&inst, "postqueue", &["-f"]);
    wait_attempts(&inst, &b, 2);
    pause(500);
    assert_eq!(attempts(&inst, &a, "alice@virt.test"), 1);
    assert_eq!(queues_of(&inst, &a), ["hold"]);

    // -H ID: back to deferred/ and retried at once, despite the 300 s backoff.
    let (_, err) = ok(&inst, "postsuper", &["-H", &a]);
    assert_eq!(
        err,
        format!("postsuper: {a}: released from hold\npostsuper: Released from hold: 1 message\n")
    );
    wait_attempts(&inst, &a, 2);
    assert_eq!(inst.queue_count("hold"), 0);
    let listing = mailq(&inst);
    assert_eq!(marks(&listing, &a), "", "{listing}");
    assert!(!listing.contains('!'), "{listing}");

    // Releasing a message that is not on hold, or holding one that is in no queue, does
    // nothing and says nothing.
    let (_, err) = ok(&inst, "postsuper", &["-H", &a]);
    assert_eq!(err, "");
    let (_, err) = ok(&inst, "postsuper", &["-h", &other_id(&a)]);
    assert_eq!(err, "");
    assert_eq!(queues_of(&inst, &a), ["deferred"]);
    assert_eq!(inst.queue_count("hold"), 0);

    // -h ALL: both held.
    let (_, err) = ok(&inst, "postsuper", &["-h", "ALL"]);
    assert!(
        err.contains(&format!("postsuper: {a}: placed on hold\n")),
        "{err}"
    );
    assert!(
        err.contains(&format!("postsuper: {b}: placed on hold\n")),
        "{err}"
    );
    assert!(
        err.ends_with("postsuper: Placed on hold: 2 messages\n"),
        "{err}"
    );
    assert_eq!(queues_of(&inst, &a), ["hold"]);
    assert_eq!(queues_of(&inst, &b), ["hold"]);
    assert_eq!(
        (inst.queue_count("hold"), inst.queue_count("deferred")),
        (2, 0)
    );
    let listing = mailq(&inst);
    assert_eq!(marks(&listing, &a), "!", "{listing}");
    assert_eq!(marks(&listing, &b), "!", "{listing}");
    let json = mailq_json(&inst);
    assert_eq!(json.len(), 2, "{json:#?}");
    assert!(
        json.iter()
            .all(|l| l.starts_with("{\"queue_name\": \"hold\", ")),
        "{json:#?}"
    );
    // Held mail keeps its defer logs (the listing still shows the reason).
    assert!(find_file(&inst, "defer", &a).is_some());
    assert!(listing.contains(&format!("({REASON})")), "{listing}");

    // -H ALL: both released and retried.
    let (_, err) = ok(&inst, "postsuper", &["-H", "ALL"]);
    assert!(
        err.ends_with("postsuper: Released from hold: 2 messages\n"),
        "{err}"
    );
    wait_attempts(&inst, &a, 3);
    wait_attempts(&inst, &b, 3);
    assert_eq!(
        (inst.queue_count("hold"), inst.queue_count("deferred")),
        (0, 2)
    );
    let listing = mailq(&inst);
    assert!(!listing.contains('!'), "{listing}");
    assert!(
        listing.ends_with("\n-- 0 Kbytes in 2 Requests.\n"),
        "{listing}"
    );
    inst.stop();
}

#[test]
fn delete_by_id_by_queue_and_from_stdin() {
    let mut inst = deferring_instance();
    let a = send_deferred(&inst, "del-a", &["alice@virt.test"]);
    let b = send_deferred(&inst, "del-b", &["alice@virt.test"]);
    let c = send_deferred(&inst, "del-c", &["alice@virt.test"]);
    ok(&inst, "postsuper", &["-h", &c]);
    assert_eq!(queues_of(&inst, &c), ["hold"]);
    assert_eq!(inst.queue_count("defer"), 3);

    // -d ID: the message and its defer log are gone; the others stay.
    let (_, err) = ok(&inst, "postsuper", &["-d", &a]);
    assert_eq!(
        err,
        format!("postsuper: {a}: removed\npostsuper: Deleted: 1 message\n")
    );
    assert!(
        queues_of(&inst, &a).is_empty(),
        "{:?}",
        queues_of(&inst, &a)
    );
    assert!(
        find_file(&inst, "defer", &a).is_none(),
        "defer log of {a} left"
    );
    assert_eq!(queues_of(&inst, &b), ["deferred"]);
    assert_eq!(queues_of(&inst, &c), ["hold"]);
    assert_eq!(inst.queue_count("defer"), 2);
    let listing = mailq(&inst);
    assert!(!listing.contains(&a), "{listing}");
    assert!(
        listing.ends_with("\n-- 0 Kbytes in 2 Requests.\n"),
        "{listing}"
    );
    assert!(log_of(&inst, "postsuper").contains(&format!("{a}: removed")));

    // -d ALL deferred: only the deferred queue; the held message stays.
    let (_, err) = ok(&inst, "postsuper", &["-d", "ALL", "deferred"]);
    assert_eq!(
        err,
        format!("postsuper: {b}: removed\npostsuper: Deleted: 1 message\n")
    );
    assert!(
        queues_of(&inst, &b).is_empty(),
        "{:?}",
        queues_of(&inst, &b)
    );
    assert!(
        find_file(&inst, "defer", &b).is_none(),
        "defer log of {b} left"
    );
    assert_eq!(queues_of(&inst, &c), ["hold"]);
    assert_eq!(inst.queue_count("deferred"), 0);
    let json = mailq_json(&inst);
    assert_eq!(json.len(), 1, "{json:#?}");
    assert!(json_of(&json, &c).starts_with("{\"queue_name\": \"hold\", "));

    // -d - : IDs from standard input; an ID in no queue is skipped silently.
    // An invalid ID is reported and skipped.
    let gone = format!("{a}\n../{c}\n{c}\n");
    let (_, err) = ok_stdin(&inst, "postsuper", &["-d", "-"], &gone);
    assert_eq!(
        err,
        format!(
            "postsuper: warning: invalid mail queue id: ../{c}\n\
             postsuper: {c}: removed\npostsuper: Deleted: 1 message\n"
        )
    );
    assert!(
        queues_of(&inst, &c).is_empty(),
        "{:?}",
        queues_of(&inst, &c)
    );
    assert_eq!(inst.queue_count("defer"), 0);
    assert!(inst.queue_empty());
    assert_eq!(inst.queue_count("hold"), 0);
    assert_eq!(mailq(&inst), "Mail queue is empty\n");
    assert!(mailq_json(&inst).is_empty());
    // Nothing left to delete: no summary line.
    let (_, err) = ok(&inst, "postsuper", &["-d", "ALL"]);
    assert_eq!(err, "");
    // Deleted is deleted: no delivery attempt and no notice afterwards.
    pause(500);
    for id in [&a, &b, &c] {
        assert_eq!(attempts(&inst, id, "alice@virt.test"), 1);
    }
    assert!(!inst.log_text().contains("non-delivery notification"));
    inst.stop();
}

#[test]
fn requeue_retries_at_once_and_waits_in_incoming_while_stopped() {
    // mail_owner is the account the instance runs as, so that root's postqueue can read
    // the queue as mail_owner while the mail system is down.
    let owner = if posthorn_testkit::is_root() {
        "mail_owner = nobody\n"
    } else {
        ""
    };
    let mut inst = deferring_instance_with(owner);
    let a = send_deferred(&inst, "requeue", &["alice@virt.test"]);
    let active = |inst: &Instance| {
        inst.log_text()
            .lines()
            .filter(|l| {
                l.contains(&format!("{a}: from=<{SENDER}>, size=")) && l.ends_with("(queue active)")
            })
            .count()
    };
    assert_eq!(active(&inst), 1);

    // -r while running: qmgr takes it up again at once (300 s backoff notwithstanding).
    let (_, err) = ok(&inst, "postsuper", &["-r", &a]);
    assert_eq!(
        err,
        format!("postsuper: {a}: requeued\npostsuper: Requeued: 1 message\n")
    );
    wait_attempts(&inst, &a, 2);
    assert_eq!(active(&inst), 2, "{}", inst.log_text());
    assert!(log_of(&inst, "postsuper").contains(&format!("{a}: requeued")));
    let listing = mailq(&inst);
    assert_eq!(marks(&listing, &a), "", "{listing}");

    // -r on a held message takes it out of hold.
    ok(&inst, "postsuper", &["-h", &a]);
    assert_eq!(queues_of(&inst, &a), ["hold"]);
    let (_, err) = ok(&inst, "postsuper", &["-r", &a]);
    assert!(err.ends_with("postsuper: Requeued: 1 message\n"), "{err}");
    wait_attempts(&inst, &a, 3);
    assert_eq!(inst.queue_count("hold"), 0);

    // With the mail system down, the requeued file waits in incoming/ ...
    inst.stop();
    let (_, err) = ok(&inst, "postsuper", &["-r", &a]);
    assert!(err.ends_with("postsuper: Requeued: 1 message\n"), "{err}");
    assert_eq!(queues_of(&inst, &a), ["incoming"]);
    let (cat, _) = ok(&inst, "postcat", &["-e", "-q", &a]);
    assert!(cat.starts_with("*** ENVELOPE RECORDS incoming/"), "{cat}");
    // ... where the queue listing (which needs the showq daemon) cannot see it.
    let (code, out, err) = text(&tool(&inst, "postqueue", &["-p"]));
    assert_eq!(code, Some(69), "{out}{err}");
    assert!(
        err.contains("postqueue: fatal: Queue report unavailable - mail system is down"),
        "{err}"
    );
    // root's postqueue reads the queue itself (stand-alone showq as mail_owner).
    if posthorn_testkit::is_root() {
        let out = std::process::Command::new(inst.bin.join("postqueue"))
            .arg("-j")
            .env("MAIL_CONFIG", &inst.etc)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let (code, out, err) = text(&out);
        assert_eq!(code, Some(0), "{out}{err}");
        let json: Vec<String> = out.lines().map(str::to_string).collect();
        assert!(
            json_of(&json, &a).starts_with("{\"queue_name\": \"incoming\", "),
            "{json:#?}"
        );
        assert!(
            err.contains("Mail system is down -- accessing queue directly"),
            "{err}"
        );
    }
    pause(300);
    assert_eq!(queues_of(&inst, &a), ["incoming"]);
    // ... and is delivered (here: attempted) as soon as it starts again.
    inst.start();
    wait_attempts(&inst, &a, 4);
    let json = mailq_json(&inst);
    assert!(
        json_of(&json, &a).starts_with("{\"queue_name\": \"deferred\", "),
        "{json:#?}"
    );
    inst.stop();
}

#[test]
fn requeue_keeps_delivered_recipients_done() {
    let mut inst = deferring_instance();
    let me = inst.user();
    let local = format!("{me}@localhost");
    let a = send_deferred(&inst, "partial", &[&local, "alice@virt.test"]);
    let mbox = inst.mail.join(&me);
    inst.wait_for_text(&mbox, "\nbody of partial\n");
    let sent = |inst: &Instance| {
        inst.log_text()
            .lines()
            .filter(|l| l.contains(&format!("{a}: to=<{local}>")) && l.contains("status=sent"))
            .count()
    };
    assert_eq!(sent(&inst), 1);
    // Only the recipient still to be delivered is listed.
    let listing = mailq(&inst);
    assert!(!listing.contains(&local), "{listing}");
    assert!(
        listing.contains("\n                                               alice@virt.test\n"),
        "{listing}"
    );
    let json = mailq_json(&inst);
    assert!(
        json_of(&json, &a).ends_with(&format!(
            "\"recipients\": [{{\"address\": \"alice@virt.test\", \"delay_reason\": \"{REASON}\"}}]}}"
        )),
        "{json:#?}"
    );
    let (cat, _) = ok(&inst, "postcat", &["-e", "-q", &a]);
    assert!(cat.contains(&format!("\n{local}: done\n")), "{cat}");

    ok(&inst, "postsuper", &["-r", &a]);
    wait_attempts(&inst, &a, 2);
    ok(&inst, "postsuper", &["-r", "ALL"]);
    wait_attempts(&inst, &a, 3);
    // The local recipient was not delivered again.
    pause(300);
    assert_eq!(sent(&inst), 1, "{}", inst.log_text());
    let text = read_text(&mbox);
    assert_eq!(text.matches("\nbody of partial\n").count(), 1, "{text}");
    let listing = mailq(&inst);
    assert!(!listing.contains(&local), "{listing}");
    let (cat, _) = ok(&inst, "postcat", &["-e", "-q", &a]);
    assert!(cat.contains(&format!("\n{local}: done\n")), "{cat}");
    inst.stop();
}

#[test]
fn hold_waits_for_a_delivery_under_way_and_delete_does_not() {
    // An alias command that takes 2 s and then fails temporarily.
    let mut inst = Instance::new(
        "queue_run_delay = 300s\nminimal_backoff_time = 300s\nmaximal_backoff_time = 300s\n",
    );
    let script = inst.write_file(
        "bin/slow.sh",
        "#!/bin/sh\ncat >/dev/null\nsleep 2\nexit 75\n",
    );
    fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    inst.setup_aliases(&format!("slow: \"|{}\"\n", script.display()));
    inst.start();
    let out = inst.sendmail(
        &["-f", SENDER, "slow@localhost"],
        &message_with_body("slow", "x\n"),
    );
    assert!(out.status.success());
    inst.log_line("message-id=<slow@example.org>");
    let a = queue_id_for(&inst.log_text(), "message-id=<slow@example.org>");
    let tries = |inst: &Instance| {
        inst.log_text()
            .lines()
            .filter(|l| {
                l.contains(&format!("{a}: to=<slow@localhost>")) && l.contains("status=deferred")
            })
            .count()
    };
    inst.expect_log(&format!("{a}: from=<{SENDER}>"), T);
    wait_in(&inst, &a, "active");
    let listing = mailq(&inst);
    assert_eq!(marks(&listing, &a), "*", "{listing}");
    assert!(json_of(&mailq_json(&inst), &a).starts_with("{\"queue_name\": \"active\", "));

    // -h waits until qmgr is done with the message, then holds it.
    assert_eq!(tries(&inst), 0);
    let (_, err) = ok(&inst, "postsuper", &["-h", &a]);
    assert_eq!(
        err,
        format!(
            "postsuper: waiting up to 10s for the queue manager to finish with 1 message \
             in the active queue\npostsuper: {a}: placed on hold\n\
             postsuper: Placed on hold: 1 message\n"
        )
    );
    assert_eq!(
        tries(&inst),
        1,
        "held before the attempt ended; log:\n{}",
        inst.log_text()
    );
    assert_eq!(queues_of(&inst, &a), ["hold"]);
    pause(500);
    assert_eq!(queues_of(&inst, &a), ["hold"]);

    // Released, it is tried again; -d during that attempt removes it at once, and it
    // does not come back when the attempt ends.
    ok(&inst, "postsuper", &["-H", &a]);
    let ok_active = inst.wait_until(T, || {
        inst.log_text()
            .matches(&format!("{a}: from=<{SENDER}>"))
            .count()
            == 2
            && queues_of(&inst, &a) == ["active"]
    });
    assert!(ok_active, "not retried; log:\n{}", inst.log_text());
    let (_, err) = ok(&inst, "postsuper", &["-d", &a]);
    assert_eq!(
        err,
        format!("postsuper: {a}: removed\npostsuper: Deleted: 1 message\n")
    );
    assert!(queues_of(&inst, &a).is_empty());
    assert!(tries(&inst) < 2, "delete waited for the delivery");
    let ended = inst.wait_until(T, || tries(&inst) == 2);
    assert!(
        ended,
        "second attempt never ended; log:\n{}",
        inst.log_text()
    );
    pause(500);
    assert!(
        queues_of(&inst, &a).is_empty(),
        "{:?}",
        queues_of(&inst, &a)
    );
    assert!(inst.queue_empty());
    assert_eq!(
        inst.queue_count("defer"),
        0,
        "defer log of a deleted message"
    );
    assert_eq!(mailq(&inst), "Mail queue is empty\n");
    inst.stop();
}

#[test]
fn flush_after_fixing_the_cause_delivers_and_empties_the_queue() {
    let mut inst = deferring_instance();
    let a = send_deferred(&inst, "flush", &["alice@virt.test"]);
    // A flush while the cause remains: one more attempt, deferred again.
    let (out, err) = ok(&inst, "postqueue", &["-f"]);
    assert_eq!((out.as_str(), err.as_str()), ("", ""));
    wait_attempts(&inst, &a, 2);
    assert!(!inst.log_text().contains("status=sent"));

    // Fix the cause and reload.
    let cf = inst.etc.join("main.cf");
    let fixed = read_text(&cf).replace(
        "virtual_minimum_uid = 4000000000",
        "virtual_minimum_uid = 0",
    );
    assert!(!fixed.contains("4000000000"));
    fs::write(&cf, fixed).unwrap();
    inst.chown_all();
    let r = inst.posthorn(&["reload"]);
    assert!(
        r.status.success(),
        "reload: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    inst.expect_log("reload -- version", T);
    pause(1000);
    // Nothing happens by itself: the next retry is 300 s away.
    assert_eq!(queues_of(&inst, &a), ["deferred"]);

    ok(&inst, "postqueue", &["-f"]);
    let sent = format!("{a}: to=<alice@virt.test>, relay=virtual");
    let ok_sent = inst.wait_until(T, || {
        inst.log_text().lines().any(|l| {
            l.contains(&sent) && l.ends_with("dsn=2.0.0, status=sent (delivered to maildir)")
        })
    });
    assert!(ok_sent, "not delivered; log:\n{}", inst.log_text());
    inst.expect_log(&format!("{a}: removed"), T);
    assert!(inst.wait_until(T, || inst.queue_empty()), "queue not empty");
    assert!(queues_of(&inst, &a).is_empty());
    assert!(
        inst.wait_until(T, || inst.queue_count("defer") == 0),
        "defer log left"
    );
    let md = inst.mail.join("alice");
    let got = inst.maildir(&md);
    assert_eq!(got.len(), 1, "{got:?}");
    let msg = String::from_utf8_lossy(&got[0].1);
    assert!(msg.contains("\nSubject: tools flush\n"), "{msg}");
    assert!(msg.ends_with("\nbody of flush\n"), "{msg}");
    assert_eq!(mailq(&inst), "Mail queue is empty\n");
    assert!(mailq_json(&inst).is_empty());
    inst.stop();
}

#[test]
fn flush_one_message_or_one_site_retries_only_that_mail() {
    // soft_bounce: mail for an unknown local user is deferred too (site "localhost").
    let mut inst = deferring_instance_with("soft_bounce = yes\n");
    let a = send_deferred(&inst, "one-a", &["alice@virt.test"]);
    let b = send_deferred(&inst, "one-b", &["bob@virt.test"]);
    let c = send_deferred(&inst, "one-c", &["nosuchuser@localhost"]);
    let tally = |inst: &Instance| {
        [
            attempts(inst, &a, "alice@virt.test"),
            attempts(inst, &b, "bob@virt.test"),
            attempts(inst, &c, "nosuchuser@localhost"),
        ]
    };
    assert_eq!(tally(&inst), [1, 1, 1]);

    // -i ID: that message only.
    let (out, err) = ok(&inst, "postqueue", &["-i", &a]);
    assert_eq!((out.as_str(), err.as_str()), ("", ""));
    wait_attempts(&inst, &a, 2);
    pause(700);
    assert_eq!(tally(&inst), [2, 1, 1], "{}", inst.log_text());

    // -s domain: the messages with a recipient there (the domain in any case).
    ok(&inst, "postqueue", &["-s", "virt.test"]);
    wait_attempts(&inst, &a, 3);
    wait_attempts_for(&inst, &b, "bob@virt.test", 2);
    pause(700);
    assert_eq!(tally(&inst), [3, 2, 1], "{}", inst.log_text());
    ok(&inst, "postqueue", &["-s", "LocalHost"]);
    wait_attempts_for(&inst, &c, "nosuchuser@localhost", 2);
    pause(700);
    assert_eq!(tally(&inst), [3, 2, 2], "{}", inst.log_text());

    // A message whose recipient there is already delivered is not mail for that site.
    let local = format!("{}@localhost", inst.user());
    let d = send_deferred(&inst, "one-d", &[&local, "alice@virt.test"]);
    assert_eq!(attempts(&inst, &d, "alice@virt.test"), 1);
    ok(&inst, "postqueue", &["-s", "localhost"]);
    wait_attempts_for(&inst, &c, "nosuchuser@localhost", 3);
    pause(700);
    assert_eq!(tally(&inst), [3, 2, 3], "{}", inst.log_text());
    assert_eq!(
        attempts(&inst, &d, "alice@virt.test"),
        1,
        "{}",
        inst.log_text()
    );
    ok(&inst, "postsuper", &["-d", &d]);

    // A site with no mail, an ID in no queue: accepted, nothing retried.
    ok(&inst, "postqueue", &["-s", "example.net"]);
    ok(&inst, "postqueue", &["-s", "[192.0.2.1]"]);
    ok(&inst, "postqueue", &["-i", &other_id(&a)]);
    // -i does not release a held message.
    ok(&inst, "postsuper", &["-h", &b]);
    ok(&inst, "postqueue", &["-i", &b]);
    ok(&inst, "postqueue", &["-s", "virt.test"]);
    wait_attempts(&inst, &a, 4);
    pause(700);
    assert_eq!(tally(&inst), [4, 2, 3], "{}", inst.log_text());
    assert_eq!(queues_of(&inst, &b), ["hold"]);
    // Every message still queued, each once.
    let listing = mailq(&inst);
    assert!(listing.ends_with(" Kbytes in 3 Requests.\n"), "{listing}");
    assert_eq!(marks(&listing, &b), "!", "{listing}");
    // A bad ID or site is refused.
    let (code, _, err) = text(&tool(&inst, "postqueue", &["-i", "../x"]));
    assert_eq!(code, Some(64), "{err}");
    assert!(
        err.contains("postqueue: fatal: Cannot flush queue ID - invalid name: \"../x\""),
        "{err}"
    );
    let (code, _, err) = text(&tool(&inst, "postqueue", &["-s", "bad site!"]));
    assert_eq!(code, Some(64), "{err}");
    inst.stop();
}

#[test]
fn postcat_shows_the_parts_and_refuses_a_corrupt_copy() {
    let mut inst = deferring_instance();
    let a = send_deferred(&inst, "cat", &["alice@virt.test"]);
    let file = find_file(&inst, "deferred", &a).unwrap();
    let rel = file
        .strip_prefix(&inst.queue)
        .unwrap()
        .display()
        .to_string();

    let (all, err) = ok(&inst, "postcat", &["-q", &a]);
    assert_eq!(err, "");
    let sections = [
        "ENVELOPE RECORDS",
        "MESSAGE CONTENTS",
        "HEADER EXTRACTED",
        "MESSAGE FILE END",
        "RECIPIENT STATUS",
    ];
    for s in sections {
        assert!(
            all.contains(&format!("*** {s} {rel} ***\n")),
            "no {s}:\n{all}"
        );
    }
    assert!(
        all.starts_with(&format!("*** ENVELOPE RECORDS {rel} ***\n")),
        "{all}"
    );
    assert!(all.contains(&format!("\nsender: {SENDER}\n")), "{all}");
    assert!(all.contains("\nrecipient: alice@virt.test\n"), "{all}");
    assert!(all.contains("\nSubject: tools cat\n"), "{all}");
    assert!(all.contains(&format!("\tid {a}\n")), "{all}");
    assert!(
        all.contains("\n\nbody of cat\n*** HEADER EXTRACTED"),
        "{all}"
    );
    assert!(
        all.contains(&format!(
            "\nalice@virt.test: pending (deferred: 4.3.5 {REASON})\n"
        )),
        "{all}"
    );
    assert!(
        all.contains(&format!("\n*** RECORD CHECK {rel}: ok, ")),
        "{all}"
    );

    // -h: the header only.
    let (h, _) = ok(&inst, "postcat", &["-h", "-q", &a]);
    assert!(h.starts_with("Received: by mail.example.test"), "{h}");
    assert!(h.contains("\nSubject: tools cat\n"), "{h}");
    assert!(
        h.ends_with("Date: Wed, 25 Nov 2026 10:00:00 +0000\n"),
        "{h}"
    );
    assert!(
        !h.contains("body of cat") && !h.contains("***") && !h.contains("sender:"),
        "{h}"
    );
    // -b: the body only, from the empty line on.
    let (b, _) = ok(&inst, "postcat", &["-b", "-q", &a]);
    assert_eq!(b, "\nbody of cat\n");
    // -e: the envelope and the check sections, no content.
    let (e, _) = ok(&inst, "postcat", &["-e", "-q", &a]);
    assert!(e.contains(&format!("\nsender: {SENDER}\n")), "{e}");
    assert!(e.contains("\nrecipient: alice@virt.test\n"), "{e}");
    assert!(!e.contains("Subject:") && !e.contains("body of cat"), "{e}");
    assert!(
        e.contains(&format!(
            "*** MESSAGE CONTENTS {rel} ***\n*** HEADER EXTRACTED"
        )),
        "{e}"
    );
    // -h -b: header and body, no envelope.
    let (hb, _) = ok(&inst, "postcat", &["-h", "-b", "-q", &a]);
    assert_eq!(hb, format!("{h}{b}"));
    // The whole listing is the sum of its parts.
    assert!(all.contains(&hb), "{all}");

    // A file named on the command line: the same record check.
    let (by_path, _) = ok(&inst, "postcat", &[file.to_str().unwrap()]);
    assert!(by_path.contains("\nSubject: tools cat\n"), "{by_path}");

    // A queue ID that is in no queue.
    let (code, _, err) = text(&tool(&inst, "postcat", &["-q", &other_id(&a)]));
    assert_eq!(code, Some(66), "{err}");

    // A copy with one content byte flipped: shown as far as sound, then refused.
    let bytes = fs::read(&file).unwrap();
    let at = bytes
        .windows(11)
        .position(|w| w == b"body of cat")
        .expect("body in the queue file");
    let mut bad = bytes.clone();
    bad[at] ^= 0x20;
    let copy = inst.root().join("flipped");
    fs::write(&copy, &bad).unwrap();
    fs::set_permissions(&copy, fs::metadata(&file).unwrap().permissions()).unwrap();
    inst.chown_all();
    let (code, _, err) = text(&tool(&inst, "postcat", &[copy.to_str().unwrap()]));
    assert_eq!(code, Some(65), "{err}");
    assert!(err.contains("postcat: warning: "), "{err}");
    assert!(err.contains("corrupt queue file"), "{err}");

    // A truncated copy: the same.
    let cut = inst.root().join("truncated");
    fs::write(&cut, &bytes[..at + 3]).unwrap();
    fs::set_permissions(&cut, fs::metadata(&file).unwrap().permissions()).unwrap();
    inst.chown_all();
    let (code, _, err) = text(&tool(&inst, "postcat", &[cut.to_str().unwrap()]));
    assert_eq!(code, Some(65), "{err}");
    assert!(err.contains("corrupt queue file"), "{err}");

    // Reading changed nothing: the original is sound and still deferred.
    assert_eq!(queues_of(&inst, &a), ["deferred"]);
    assert_eq!(fs::read(&file).unwrap(), bytes);
    ok(&inst, "postcat", &["-q", &a]);
    inst.stop();
}

#[test]
fn postconf_shows_and_edits_the_instance_configuration() {
    let inst = Instance::new("");
    let cf = inst.etc.join("main.cf");

    // -n: the explicit settings, sorted, as written (no expansion); no defaults.
    let (n, _) = ok(&inst, "postconf", &["-n"]);
    assert!(n.contains("\nmyhostname = mail.example.test\n"), "{n}");
    assert!(n.contains("\nmydomain = example.test\n"), "{n}");
    assert!(
        n.contains("\nmydestination = $myhostname, localhost.$mydomain, localhost\n"),
        "{n}"
    );
    assert!(
        n.contains(&format!("\nqueue_directory = {}\n", inst.queue.display())),
        "{n}"
    );
    assert!(!n.contains("mail_version"), "{n}");
    let names: Vec<&str> = n.lines().map(|l| l.split(" = ").next().unwrap()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted);

    // -e keeps comments, blank lines and order; the value changes where it stands.
    let original = read_text(&cf);
    let commented = format!("# administrator's note: keep me\n\n{original}# trailing note\n");
    fs::write(&cf, &commented).unwrap();
    inst.chown_all();
    let (out, _) = ok(&inst, "postconf", &["-e", "myhostname=other.example.test"]);
    assert_eq!(out, "");
    let edited = read_text(&cf);
    assert_eq!(
        edited,
        commented.replace(
            "\nmyhostname = mail.example.test\n",
            "\nmyhostname = other.example.test\n"
        )
    );
    let (n, _) = ok(&inst, "postconf", &["-n"]);
    assert!(n.contains("\nmyhostname = other.example.test\n"), "{n}");
    assert!(!n.contains("mail.example.test"), "{n}");
    let (h, _) = ok(&inst, "postconf", &["-h", "myhostname"]);
    assert_eq!(h, "other.example.test\n");
    // $myhostname expands to the new value.
    let (x, _) = ok(&inst, "postconf", &["-x", "mydestination"]);
    assert_eq!(
        x,
        "mydestination = other.example.test, localhost.example.test, localhost\n"
    );

    // A parameter the file lacks is appended at the end; -X takes it out again.
    ok(&inst, "postconf", &["-e", "delay_warning_time = 4h"]);
    let appended = read_text(&cf);
    assert!(appended.starts_with(&edited), "{appended}");
    assert!(
        appended.ends_with("# trailing note\ndelay_warning_time = 4h\n"),
        "{appended}"
    );
    let (h, _) = ok(&inst, "postconf", &["-h", "delay_warning_time"]);
    assert_eq!(h, "4h\n");
    ok(&inst, "postconf", &["-X", "delay_warning_time"]);
    assert_eq!(read_text(&cf), edited);

    // -d: built-in defaults, main.cf not read.
    let (d, _) = ok(&inst, "postconf", &["-d", "mail_version"]);
    assert_eq!(d, "mail_version = 0.1.0\n");
    let (d, _) = ok(&inst, "postconf", &["-d", "queue_run_delay"]);
    assert_eq!(d, "queue_run_delay = 300s\n");
    let (p, _) = ok(&inst, "postconf", &["queue_run_delay"]);
    assert_eq!(p, "queue_run_delay = 1s\n");

    // The edited configuration is the one the mail system runs with.
    let chk = inst.posthorn(&["check"]);
    assert!(
        chk.status.success(),
        "check: {}",
        String::from_utf8_lossy(&chk.stderr)
    );
}

#[test]
fn postmap_builds_a_table_that_answers_queries() {
    let inst = Instance::new("");
    let src = inst.write_file(
        "tables/senders",
        "# who may send\nalice@example.test   ok-alice\nBob@Example.Test\tok-bob\n\n\
         postmaster@example.test  first\n  continued\n",
    );
    let table = format!("hash:{}", src.display());
    let (out, err) = ok(&inst, "postmap", &[&table]);
    assert_eq!((out.as_str(), err.as_str()), ("", ""));
    let db = inst.root().join("tables/senders.db");
    assert!(db.exists(), "no {}", db.display());

    // Found: the value, exit 0 (keys fold to lower case).
    let (v, _) = ok(&inst, "postmap", &["-q", "alice@example.test", &table]);
    assert_eq!(v, "ok-alice\n");
    let (v, _) = ok(&inst, "postmap", &["-q", "BOB@example.test", &table]);
    assert_eq!(v, "ok-bob\n");
    let (v, _) = ok(&inst, "postmap", &["-q", "postmaster@example.test", &table]);
    assert_eq!(v, "first  continued\n");
    // Not found: nothing printed, exit 1.
    let (code, out, err) = text(&tool(
        &inst,
        "postmap",
        &["-q", "carol@example.test", &table],
    ));
    assert_eq!((code, out.as_str(), err.as_str()), (Some(1), "", ""));
    // -q -: keys from standard input, key TAB value for each found; exit 0 if any.
    let (v, _) = ok_stdin(
        &inst,
        "postmap",
        &["-q", "-", &table],
        "carol@example.test\nalice@example.test\nbob@example.test\n",
    );
    assert_eq!(
        v,
        "alice@example.test\tok-alice\nbob@example.test\tok-bob\n"
    );
    let (code, out, _) = text(&tool_stdin(
        &inst,
        "postmap",
        &["-q", "-", &table],
        "nobody@example.test\n",
    ));
    assert_eq!((code, out.as_str()), (Some(1), ""));

    // A rebuild after an edit replaces the table.
    fs::write(&src, "alice@example.test ok-again\n").unwrap();
    inst.chown_all();
    ok(&inst, "postmap", &[&table]);
    let (v, _) = ok(&inst, "postmap", &["-q", "alice@example.test", &table]);
    assert_eq!(v, "ok-again\n");
    let (code, out, _) = text(&tool(&inst, "postmap", &["-q", "bob@example.test", &table]));
    assert_eq!((code, out.as_str()), (Some(1), ""));
}

#[test]
fn hold_all_during_a_flush_holds_every_message() {
    // `postsuper -h ALL` right after `postqueue -f`: qmgr moves messages deferred ->
    // active -> deferred while postsuper walks the queues. Each message must end up in
    // hold/ (postsuper waits for the ones qmgr has in active/ and looks again for one whose
    // rename fails because qmgr moved it), once, and be listed once.
    let mut inst = deferring_instance();
    let ids: Vec<String> = (0..12)
        .map(|i| send_deferred(&inst, &format!("race-{i}"), &["alice@virt.test"]))
        .collect();
    assert_eq!(inst.queue_count("deferred"), ids.len());
    // Several rounds, as the race is narrow.
    for round in 0..8 {
        ok(&inst, "postqueue", &["-f"]);
        let (_, err) = ok(&inst, "postsuper", &["-h", "ALL"]);
        // postsuper returns once it is done with the messages it found active.
        let held = inst.wait_until(Duration::from_secs(2), || {
            inst.queue_count("hold") == ids.len()
        });
        let missed: Vec<(&String, Vec<&str>)> = ids
            .iter()
            .map(|id| (id, queues_of(&inst, id)))
            .filter(|(_, q)| q.as_slice() != ["hold"])
            .collect();
        assert!(
            held,
            "round {round}: postsuper -h ALL exited 0 but left {} of {} messages out of hold: \
             {missed:?}\npostsuper said:\n{err}\nlog:\n{}",
            missed.len(),
            ids.len(),
            inst.log_text()
        );
        let listing = mailq(&inst);
        assert!(
            listing.ends_with(&format!("Kbytes in {} Requests.\n", ids.len())),
            "{listing}"
        );
        assert_eq!(listing.matches("! ").count(), ids.len(), "{listing}");
        let before: Vec<usize> = ids
            .iter()
            .map(|id| attempts(&inst, id, "alice@virt.test"))
            .collect();
        let (_, err) = ok(&inst, "postsuper", &["-H", "ALL"]);
        assert!(
            err.ends_with(&format!("Released from hold: {} messages\n", ids.len())),
            "{err}"
        );
        // Released: each is retried at once and deferred again.
        for (id, n) in ids.iter().zip(before) {
            wait_attempts(&inst, id, n + 1);
        }
    }
    // Then all deleted at once.
    let (_, err) = ok(&inst, "postsuper", &["-d", "ALL"]);
    assert!(
        err.ends_with(&format!("Deleted: {} messages\n", ids.len())),
        "{err}"
    );
    pause(500);
    assert!(inst.queue_empty() && inst.queue_count("hold") == 0);
    assert_eq!(inst.queue_count("defer"), 0);
    assert_eq!(mailq(&inst), "Mail queue is empty\n");
    inst.stop();
}
