//! `postqueue`: see the posthorn_postqueue crate documentation (the postqueue(1) man page).

fn main() {
    std::process::exit(posthorn_postqueue::run());
}
