//! Console sessions: what a signed-in browser's cookie stands for.
//!
//! Signing in with an API key makes a session held here, in memory: the
//! browser gets only a random session token (256 bits) in an `HttpOnly`,
//! `SameSite=Strict` cookie, never the API key. The session names the
//! tenant and the key, not the key's scopes: every request reads the key
//! again (see [`crate::service::keys::session_caller`]), so revoking a key
//! or changing its scopes takes effect on the next click.
//!
//! A session ends after `idle_timeout_secs` without a request and
//! `absolute_timeout_secs` after sign-in, whichever comes first. The store
//! is bounded: when it is full, expired sessions go first, then the one
//! idle longest. Sessions do not survive a restart of the service (people
//! sign in again), and with several nodes behind a balancer a session
//! lives on the node that made it (use sticky sessions).
//!
//! Every session carries a CSRF token (256 bits), put in each form it
//! renders and compared in constant time with the one a form sends back.
//! Tokens are looked up by their blake3 hash: the map holds no token a
//! memory dump could replay.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;

use crate::config::ConsoleConfig;
use crate::crypto::{random_bytes, to_hex};
use crate::ids::{ApiKeyId, TenantId};

/// A short message shown once on the next page (after a redirect).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub text: String,
    /// An error rather than a confirmation.
    pub error: bool,
}

/// What a session holds.
#[derive(Debug, Clone)]
pub struct Session {
    pub tenant: TenantId,
    pub key: ApiKeyId,
    /// The session's CSRF token, as put in forms.
    pub csrf: String,
    pub signed_in: Instant,
    pub last_seen: Instant,
    pub notice: Option<Notice>,
}

impl Session {
    /// Whether `presented` is this session's CSRF token (constant time).
    pub fn csrf_matches(&self, presented: &str) -> bool {
        bool::from(self.csrf.as_bytes().ct_eq(presented.as_bytes()))
    }
}

/// Why a cookie names no live session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// No such session (never made, signed out, or evicted).
    Unknown,
    /// It expired: too long idle, or too long since sign-in.
    Expired,
}

/// The sessions of one service.
pub struct Sessions {
    idle: Duration,
    absolute: Duration,
    capacity: usize,
    by_hash: Mutex<HashMap<[u8; 32], Session>>,
}

fn hash(token: &str) -> [u8; 32] {
    *blake3::hash(token.as_bytes()).as_bytes()
}

/// A fresh random token (session or CSRF), as hex.
pub fn new_token() -> String {
    to_hex(&random_bytes::<32>())
}

impl Sessions {
    pub fn new(config: &ConsoleConfig) -> Sessions {
        Sessions {
            idle: Duration::from_secs(config.idle_timeout_secs),
            absolute: Duration::from_secs(config.absolute_timeout_secs),
            capacity: config.max_sessions.max(1),
            by_hash: Mutex::new(HashMap::new()),
        }
    }

    fn expired(&self, session: &Session, now: Instant) -> bool {
        now.saturating_duration_since(session.last_seen) >= self.idle
            || now.saturating_duration_since(session.signed_in) >= self.absolute
    }

    /// Start a session; answers its token (for the cookie).
    pub fn start(&self, tenant: TenantId, key: ApiKeyId, now: Instant) -> String {
        let token = new_token();
        let session = Session {
            tenant,
            key,
            csrf: new_token(),
            signed_in: now,
            last_seen: now,
            notice: None,
        };
        let mut sessions = self.by_hash.lock().expect("sessions lock");
        if sessions.len() >= self.capacity {
            sessions.retain(|_, s| !self.expired(s, now));
        }
        if sessions.len() >= self.capacity
            && let Some(idlest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(hash, _)| *hash)
        {
            sessions.remove(&idlest);
        }
        sessions.insert(hash(&token), session);
        token
    }

    /// The session a cookie's token names, marked as seen now; an expired
    /// one is removed. The session's notice is taken: it shows once.
    pub fn resume(&self, token: &str, now: Instant) -> Result<Session, Ended> {
        let mut sessions = self.by_hash.lock().expect("sessions lock");
        let key = hash(token);
        let Some(session) = sessions.get_mut(&key) else {
            return Err(Ended::Unknown);
        };
        if self.expired(session, now) {
            sessions.remove(&key);
            return Err(Ended::Expired);
        }
        session.last_seen = now;
        let mut resumed = session.clone();
        resumed.notice = session.notice.take();
        Ok(resumed)
    }

    /// Leave a notice for the session's next page.
    pub fn notify(&self, token: &str, notice: Notice) {
        if let Some(session) = self
            .by_hash
            .lock()
            .expect("sessions lock")
            .get_mut(&hash(token))
        {
            session.notice = Some(notice);
        }
    }

    /// End a session (sign-out, or its key is gone).
    pub fn end(&self, token: &str) {
        self.by_hash
            .lock()
            .expect("sessions lock")
            .remove(&hash(token));
    }

    /// Sessions held now (expired ones included until they are touched).
    pub fn len(&self) -> usize {
        self.by_hash.lock().expect("sessions lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions(idle: u64, absolute: u64, max: usize) -> Sessions {
        Sessions::new(&ConsoleConfig {
            idle_timeout_secs: idle,
            absolute_timeout_secs: absolute,
            max_sessions: max,
            ..ConsoleConfig::default()
        })
    }

    #[test]
    fn a_session_ends_when_idle_too_long_or_too_long_after_sign_in() {
        let store = sessions(60, 300, 10);
        let start = Instant::now();
        let tenant = TenantId::generate();
        let token = store.start(tenant, ApiKeyId::generate(), start);
        // Kept alive by activity every 50 s…
        for step in 1..=5 {
            let at = start + Duration::from_secs(50 * step);
            assert_eq!(store.resume(&token, at).unwrap().tenant, tenant);
        }
        // …until 300 s after sign-in, however active.
        assert_eq!(
            store
                .resume(&token, start + Duration::from_secs(300))
                .unwrap_err(),
            Ended::Expired
        );
        assert_eq!(
            store
                .resume(&token, start + Duration::from_secs(301))
                .unwrap_err(),
            Ended::Unknown,
            "an expired session is forgotten"
        );

        let idle = store.start(tenant, ApiKeyId::generate(), start);
        assert_eq!(
            store
                .resume(&idle, start + Duration::from_secs(60))
                .unwrap_err(),
            Ended::Expired
        );
    }

    #[test]
    fn a_full_store_drops_the_session_idle_longest() {
        let store = sessions(600, 6000, 2);
        let start = Instant::now();
        let tenant = TenantId::generate();
        let first = store.start(tenant, ApiKeyId::generate(), start);
        let second = store.start(tenant, ApiKeyId::generate(), start + Duration::from_secs(1));
        // The first is used again: the second is now the idlest.
        store
            .resume(&first, start + Duration::from_secs(2))
            .unwrap();
        let third = store.start(tenant, ApiKeyId::generate(), start + Duration::from_secs(3));
        assert_eq!(store.len(), 2);
        let at = start + Duration::from_secs(4);
        assert!(store.resume(&first, at).is_ok());
        assert!(store.resume(&third, at).is_ok());
        assert_eq!(store.resume(&second, at).unwrap_err(), Ended::Unknown);
    }

    #[test]
    fn notices_show_once_and_csrf_tokens_compare_exactly() {
        let store = sessions(600, 6000, 10);
        let now = Instant::now();
        let token = store.start(TenantId::generate(), ApiKeyId::generate(), now);
        store.notify(
            &token,
            Notice {
                text: "Saved".into(),
                error: false,
            },
        );
        let session = store.resume(&token, now).unwrap();
        assert_eq!(session.notice.as_ref().unwrap().text, "Saved");
        assert!(store.resume(&token, now).unwrap().notice.is_none());

        assert!(session.csrf_matches(&session.csrf));
        assert!(!session.csrf_matches(""));
        assert!(!session.csrf_matches(&session.csrf[1..]));
        assert!(!session.csrf_matches(&new_token()));

        store.end(&token);
        assert_eq!(store.resume(&token, now).unwrap_err(), Ended::Unknown);
        assert!(store.is_empty());
    }
}
