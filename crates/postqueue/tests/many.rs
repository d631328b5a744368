//! A big queue lists completely and fast: 20,000 queue files (set POSTQUEUE_TEST_MESSAGES
//! for another number) through showq and `postqueue -p` / `-j`. Correctness is asserted;
//! the time is printed (`cargo test -p posthorn-postqueue --test many -- --nocapture`).
//!
//! The files are copies of one committed queue file under fresh queue IDs, written without
//! fsync, in `deferred/` with a retry time a day ahead (so qmgr leaves them alone) and a
//! few in `hold/`.

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use posthorn_queue::file::{Envelope, LogEntry, NewQueueFile, Recipient, SizeRecord, append_log};
use posthorn_queue::record::kind;
use posthorn_queue::{DirOwner, QueueId, QueueLayout, QueueName};
use posthorn_testkit::Instance;

const HELD: usize = 10;
const WITH_REASON: usize = 5;

/// The bytes of one committed queue file with a body of `body_len` bytes, and its size.
fn template(layout: &QueueLayout, body_len: usize) -> (Vec<u8>, u64) {
    let mut f = NewQueueFile::create(layout, QueueName::Incoming).unwrap();
    let env = Envelope {
        arrival: Some(UNIX_EPOCH + Duration::from_secs(1_763_632_800)),
        sender: "list-owner@example.org".into(),
        recipients: vec![
            Recipient {
                address: "one@example.com".into(),
                ..Recipient::default()
            },
            Recipient {
                address: "two@example.net".into(),
                ..Recipient::default()
            },
        ],
        ..Envelope::default()
    };
    env.write_records(f.writer()).unwrap();
    let m = f.put(kind::MESG, b"").unwrap();
    let body = "Subject: bulk\n\nx\n".to_string() + &"y".repeat(body_len);
    f.put_content(body.as_bytes()).unwrap();
    f.put(kind::XTRA, b"").unwrap();
    let size = body.len() as u64;
    let id = f
        .commit(SizeRecord {
            content_size: size,
            content_offset: m,
            recipients: 2,
            flags: 0,
        })
        .unwrap();
    let p = layout.path(QueueName::Incoming, &id);
    let bytes = fs::read(&p).unwrap();
    fs::remove_file(&p).unwrap();
    (bytes, size)
}

#[test]
fn twenty_thousand_messages_list_completely_and_fast() {
    let n: usize = std::env::var("POSTQUEUE_TEST_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let mut inst = Instance::new("queue_run_delay = 3600s\n");
    let layout = QueueLayout::new(&inst.queue, &["deferred".into(), "defer".into()], 1);
    layout.create_tree(&DirOwner::default()).unwrap();
    let (bytes, size) = template(&layout, 600);

    let made = Instant::now();
    let later = SystemTime::now() + Duration::from_secs(86_400);
    let base = UNIX_EPOCH + Duration::from_secs(1_763_632_800);
    let mut ids = HashSet::new();
    let mut held = HashSet::new();
    for i in 0..n {
        let q = if i < HELD {
            QueueName::Hold
        } else {
            QueueName::Deferred
        };
        let id = QueueId::new(base + Duration::from_micros(i as u64), i as u64 + 1);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o700)
            .open(layout.path(q, &id))
            .unwrap();
        f.write_all(&bytes).unwrap();
        if q == QueueName::Deferred {
            f.set_modified(later).unwrap();
        } else {
            held.insert(id.to_string());
        }
        if (HELD..HELD + WITH_REASON).contains(&i) {
            let e = LogEntry {
                recipient: "two@example.net".into(),
                orig: String::new(),
                dsn: "4.4.1".into(),
                reason: format!("test reason {i}"),
            };
            append_log(&layout, QueueName::Defer, &id, &[e]).unwrap();
        }
        ids.insert(id.to_string());
    }
    inst.chown_all();
    eprintln!("wrote {n} queue files in {:.2?}", made.elapsed());
    inst.start();

    let listing = |flag: &str| {
        let t = Instant::now();
        let out = inst
            .command("postqueue")
            .arg(flag)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let took = t.elapsed();
        assert!(
            out.status.success(),
            "postqueue {flag}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            inst.log_text()
        );
        eprintln!(
            "postqueue {flag}: {n} messages, {} bytes in {took:.2?} ({:.0} messages/s)",
            out.stdout.len(),
            n as f64 / took.as_secs_f64()
        );
        String::from_utf8(out.stdout).unwrap()
    };

    let text = listing("-p");
    let mut seen = HashSet::new();
    let mut reasons = 0;
    for line in text.lines().skip(1) {
        if line.starts_with("-- ") {
            break;
        }
        if line.trim_start().starts_with("(test reason ") {
            reasons += 1;
        }
        if line.is_empty() || line.starts_with(' ') {
            continue;
        }
        let id = line.split_whitespace().next().unwrap();
        let (bare, mark) = match id.strip_suffix('!') {
            Some(b) => (b, "!"),
            None => (id, ""),
        };
        assert_eq!(mark == "!", held.contains(bare), "{line}");
        assert!(ids.contains(bare), "unknown ID in {line}");
        assert!(seen.insert(bare.to_string()), "listed twice: {line}");
        assert!(line.ends_with(" list-owner@example.org"), "{line}");
    }
    assert_eq!(seen.len(), n);
    assert_eq!(reasons, WITH_REASON);
    assert!(
        text.ends_with(&format!(
            "\n\n-- {} Kbytes in {n} Requests.\n",
            size * n as u64 / 1024
        )),
        "{}",
        &text[text.len().saturating_sub(200)..]
    );

    let json = listing("-j");
    let mut count = 0;
    for (i, line) in json.lines().enumerate() {
        count += 1;
        if i % 997 == 0 {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(ids.contains(v["queue_id"].as_str().unwrap()), "{line}");
            assert_eq!(v["message_size"], size);
            assert_eq!(v["recipients"].as_array().unwrap().len(), 2);
        }
    }
    assert_eq!(count, n);

    // How much memory showq needed (its peak resident size), for the record.
    let master = fs::read_to_string(inst.queue.join("pid/master.pid")).unwrap();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let p = e.path();
        let comm = fs::read_to_string(p.join("comm")).unwrap_or_default();
        let stat = fs::read_to_string(p.join("stat")).unwrap_or_default();
        let ppid = stat
            .rsplit(')')
            .next()
            .and_then(|s| s.split_whitespace().nth(1));
        if comm.trim() == "showq" && ppid == Some(master.trim()) {
            let status = fs::read_to_string(p.join("status")).unwrap_or_default();
            if let Some(hwm) = status.lines().find(|l| l.starts_with("VmHWM")) {
                eprintln!("showq {hwm}");
            }
        }
    }
    inst.stop();
}
