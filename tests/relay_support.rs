//! Helpers shared by the SMTP delivery client's end-to-end tests (`relay.rs`, `relay_tls.rs`):
//! sending and receiving instances, submission with `sendmail -f`, `transport_maps` routes,
//! and waits on delivery log lines and queues. Included by each with
//! `#[path = "relay_support.rs"] mod support;`, so not every binary uses every helper.

#![allow(dead_code)]

use std::time::Duration;

use posthorn_testkit::Instance;

/// The usual bound for one expected event.
pub const T: Duration = Duration::from_secs(20);

/// The instance user's address in its own `$mydestination`.
pub fn me(inst: &Instance) -> String {
    format!("{}@mail.example.test", inst.user())
}

/// A started sending instance (`myhostname = mail.example.test`) with `extra` in main.cf.
pub fn sender(extra: &str) -> Instance {
    let mut inst = Instance::new(extra);
    inst.start();
    inst
}

/// A receiving instance (not started) named `host` that delivers mail for `domain`
/// locally; `extra` main.cf lines come last. Its own name differs from the sender's, so a
/// client's mail-loop check cannot mistake it for itself.
pub fn receiver(host: &str, domain: &str, extra: &str) -> Instance {
    Instance::new(&format!(
        "myhostname = {host}\n\
         mydestination = $myhostname, localhost, {domain}\n\
         {extra}"
    ))
}

/// Makes the (not yet started) instance offer STARTTLS (`may`) with this certificate and
/// key (PEM), written under its root.
pub fn offer_starttls(inst: &Instance, cert_pem: &str, key_pem: &str) {
    let cert = inst.write_file("tls/server.crt", cert_pem);
    let key = inst.write_file("tls/server.key", key_pem);
    inst.add_main_cf(&format!(
        "smtpd_tls_security_level = may\n\
         smtpd_tls_cert_file = {}\n\
         smtpd_tls_key_file = {}\n",
        cert.display(),
        key.display()
    ));
}

/// The main.cf line `transport_maps = inline:{ {DOMAIN=smtp:HOP}, ... }` for `routes`
/// (domain, next hop).
pub fn transport_maps(routes: &[(&str, &str)]) -> String {
    let entries: Vec<String> = routes
        .iter()
        .map(|(domain, hop)| format!("{{{domain}=smtp:{hop}}}"))
        .collect();
    format!("transport_maps = inline:{{ {} }}\n", entries.join(", "))
}

/// Submits one message from the instance user to `to` with `sendmail -f`.
pub fn send(inst: &Instance, to: &[&str], subject: &str, body: &str) {
    let me = me(inst);
    let mut args = vec!["-f", me.as_str()];
    args.extend_from_slice(to);
    let out = inst.sendmail(&args, &format!("Subject: {subject}\n\n{body}\n"));
    assert!(
        out.status.success(),
        "sendmail failed ({:?}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The delivery log lines (`ID: to=<rcpt>, relay=...`) for `rcpt`.
pub fn delivery_lines(log: &str, rcpt: &str) -> Vec<String> {
    let needle = format!(": to=<{rcpt}>, relay=");
    log.lines()
        .filter(|l| l.contains(&needle))
        .map(str::to_string)
        .collect()
}

/// Waits until a delivery line for `rcpt` contains `want`; returns that line.
pub fn wait_delivery_line(inst: &Instance, rcpt: &str, want: &str) -> String {
    let mut found = None;
    let ok = inst.wait_until(T, || {
        found = delivery_lines(&inst.log_text(), rcpt)
            .into_iter()
            .find(|l| l.contains(want));
        found.is_some()
    });
    assert!(
        ok,
        "no delivery line for <{rcpt}> with {want:?}; log:\n{}",
        inst.log_text()
    );
    found.unwrap_or_default()
}

/// Checks that every delivery line for `rcpt` in `log` is a deferral (never a bounce).
#[track_caller]
pub fn assert_only_deferred(log: &str, rcpt: &str) {
    let lines = delivery_lines(log, rcpt);
    assert!(
        lines.iter().all(|l| l.contains("status=deferred")),
        "<{rcpt}> must only ever be deferred:\n{}",
        lines.join("\n")
    );
}

/// Waits until at least one message is in the deferred queue.
#[track_caller]
pub fn wait_deferred_queue(inst: &Instance) {
    let ok = inst.wait_until(T, || inst.queue_count("deferred") >= 1);
    assert!(
        ok,
        "nothing in the deferred queue; log:\n{}",
        inst.log_text()
    );
}

/// Waits until no message is left in the instance's queues.
#[track_caller]
pub fn wait_queue_empty(inst: &Instance) {
    let ok = inst.wait_until(T, || inst.queue_empty());
    assert!(
        ok,
        "queue not empty: deferred={} active={} incoming={}; log:\n{}",
        inst.queue_count("deferred"),
        inst.queue_count("active"),
        inst.queue_count("incoming"),
        inst.log_text()
    );
}
