//! Who may talk to a writer: root and the coordinator's uid, nobody else.
//!
//! A writer's socket is mode 0600, but the check does not rely on file modes: every accepted
//! connection's peer credentials (`SO_PEERCRED`) are checked, and a connection from any other
//! user is closed at once, unanswered. Otherwise any local user could send Freeze and stall the
//! application.

/// Whether a peer with user id `peer_uid` may be served: uid 0, or the configured coordinator
/// uid.
pub fn peer_allowed(peer_uid: u32, coordinator_uid: Option<u32>) -> bool {
    peer_uid == 0 || coordinator_uid == Some(peer_uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_always_allowed() {
        assert!(peer_allowed(0, None));
        assert!(peer_allowed(0, Some(991)));
    }

    #[test]
    fn only_the_configured_coordinator_besides_root() {
        assert!(peer_allowed(991, Some(991)));
        assert!(!peer_allowed(991, None));
        assert!(!peer_allowed(1000, Some(991)));
        assert!(!peer_allowed(65534, None));
    }
}
