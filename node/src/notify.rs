//! Readiness notification to the service manager (systemd's `Type=notify`): one datagram to
//! `$NOTIFY_SOCKET` when the node is ready and one when it begins to stop. Without the variable
//! (not under systemd) it does nothing. The protocol is systemd's `sd_notify(3)`; no library is
//! needed for two datagrams.

use std::os::unix::net::UnixDatagram;

/// Sends `state` (e.g. `"READY=1\nSTATUS=…"`) to the service manager, if there is one. A failure
/// is logged, never fatal: the node works the same without a manager.
pub fn notify(state: &str) {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = UnixDatagram::unbound().and_then(|socket| {
        let bytes = target.as_encoded_bytes();
        match bytes.strip_prefix(b"@") {
            // An abstract socket (Linux): '@' stands for the leading NUL byte.
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                socket.send_to_addr(state.as_bytes(), &addr)
            }
            None => socket.send_to(state.as_bytes(), &target),
        }
    });
    if let Err(e) = sent {
        tracing::warn!(error = %e, socket = ?target, "could not notify the service manager");
    }
}
