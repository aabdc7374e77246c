//! Free loopback ports.
//!
//! Rule: a port is handed out at most once per test process, so tests running
//! in parallel threads never get the same one even after the first owner has
//! released it (a stopped etcd may be restarted on its old port).

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::Mutex;

static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A TCP port on 127.0.0.1 that was free a moment ago and that this process
/// has not handed out before. The kernel picks it (bind to port 0).
pub fn free_port() -> u16 {
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..1000 {
        let listener = TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("local_addr of a bound socket: {e}"))
            .port();
        if handed_out.insert(port) {
            return port;
        }
    }
    panic!("no free port found in 1000 attempts");
}
