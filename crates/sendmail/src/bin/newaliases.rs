//! `newaliases`: see the posthorn_sendmail crate documentation (the sendmail(1) man page).

fn main() {
    std::process::exit(posthorn_sendmail::run(posthorn_sendmail::Mode::Newaliases));
}
