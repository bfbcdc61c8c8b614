//! Links the `tutti` binary as a position-dependent executable (`-no-pie`), as Go links its binaries. A
//! position-independent one makes the dynamic loader patch about 27,000 addresses at every start, copying
//! some 120 pages of tables (vtables, string tables) privately: a third of the page faults of `tutti
//! --version`. Every command starts a process, so this is paid per command and per step of a script that
//! drives tutti. The libraries the binary loads (libc) keep address randomisation.

fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
}
