//! `vss-freeze-guard`: the process that owns a set's filesystem freezes and thaws them when the
//! commit window ends, when the freezing process dies, or on SIGTERM/SIGINT/SIGHUP. All of it
//! lives in [`vss_freeze::guard`] (which says why); this is only the entry point. Deliberately
//! no logging framework: the guard writes to stderr only after it has thawed.

fn main() {
    vss_freeze::guard::main()
}
