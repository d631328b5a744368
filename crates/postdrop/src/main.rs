//! `postdrop`: see the posthorn_postdrop crate documentation (its man page).

fn main() {
    std::process::exit(posthorn_postdrop::run());
}
