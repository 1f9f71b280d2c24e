//! Unwrapped contact keys, kept for reuse: loading one is a read of the
//! key store (a network round trip in cluster mode) and an unwrap, and an
//! event needs its contact's key several times.
//!
//! Bounded (least recently used first out), so memory does not grow with
//! the number of contacts; keys are wiped when evicted or dropped
//! (`SecretKey` zeroizes itself). An erased contact's key leaves the cache
//! with its shredding, and a load that raced the shredding cannot put it
//! back: every shredding moves an epoch, and a key loaded under an older
//! epoch is returned but not kept.
//!
//! The cache belongs to one ring: a contact erased through another ring
//! over the same key store (another node) is still served from here until
//! evicted. In cluster mode only the lease holder's ring serves requests,
//! and erasures go to it like every other request; a holder that cannot
//! confirm its lease past its expiry (another node may have taken over and
//! erased) serves nothing until it can, and exits once it learns the lease
//! moved (see `crate::node`). Rings that share contacts run with the
//! cache off (capacity 0).

use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;

use super::SecretKey;
use crate::ids::{ContactId, TenantId};

/// The cache. One lock: each operation is a hash lookup.
pub struct ContactKeys {
    inner: Mutex<Inner>,
}

struct Inner {
    /// `None`: caching is off (capacity 0).
    keys: Option<LruCache<(TenantId, ContactId), SecretKey>>,
    /// Moves on every shredding.
    epoch: u64,
    hits: u64,
    misses: u64,
}

/// The cache's epoch when a load started: pass it back to
/// [`ContactKeys::keep`].
#[derive(Debug, Clone, Copy)]
pub struct Epoch(u64);

impl ContactKeys {
    /// A cache of at most `capacity` keys; 0 keeps none.
    pub fn new(capacity: usize) -> ContactKeys {
        ContactKeys {
            inner: Mutex::new(Inner {
                keys: NonZeroUsize::new(capacity).map(LruCache::new),
                epoch: 0,
                hits: 0,
                misses: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("contact key cache lock")
    }

    /// The key, if cached; else the epoch to load it under.
    pub fn get(&self, tenant: &TenantId, contact: &ContactId) -> Result<SecretKey, Epoch> {
        let mut inner = self.lock();
        let cached = inner
            .keys
            .as_mut()
            .and_then(|keys| keys.get(&(*tenant, *contact)).cloned());
        match cached {
            Some(key) => {
                inner.hits += 1;
                Ok(key)
            }
            None => {
                inner.misses += 1;
                Err(Epoch(inner.epoch))
            }
        }
    }

    /// Keep a key loaded (or created) since `epoch`, unless a shredding
    /// happened meanwhile (it may have been this contact's).
    pub fn keep(&self, epoch: Epoch, tenant: &TenantId, contact: &ContactId, key: &SecretKey) {
        let mut inner = self.lock();
        if inner.epoch == epoch.0
            && let Some(keys) = inner.keys.as_mut()
        {
            keys.put((*tenant, *contact), key.clone());
        }
    }

    /// The epoch now (for a key about to be created).
    pub fn epoch(&self) -> Epoch {
        Epoch(self.lock().epoch)
    }

    /// Forget a shredded contact's key.
    pub fn forget(&self, tenant: &TenantId, contact: &ContactId) {
        let mut inner = self.lock();
        inner.epoch += 1;
        if let Some(keys) = inner.keys.as_mut() {
            keys.pop(&(*tenant, *contact));
        }
    }

    /// Forget every key of a shredded tenant.
    pub fn forget_tenant(&self, tenant: &TenantId) {
        let mut inner = self.lock();
        inner.epoch += 1;
        if let Some(keys) = inner.keys.as_mut() {
            let of_tenant: Vec<(TenantId, ContactId)> = keys
                .iter()
                .filter(|((owner, _), _)| owner == tenant)
                .map(|(key, _)| *key)
                .collect();
            for key in of_tenant {
                keys.pop(&key);
            }
        }
    }

    /// (keys held, hits, misses) so far.
    pub fn stats(&self) -> (usize, u64, u64) {
        let inner = self.lock();
        let held = inner.keys.as_ref().map_or(0, LruCache::len);
        (held, inner.hits, inner.misses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: u8) -> (TenantId, ContactId) {
        (
            TenantId::from_slice(&[1; 16]).unwrap(),
            ContactId::from_slice(&[n; 16]).unwrap(),
        )
    }

    #[test]
    fn it_holds_at_most_its_capacity_and_evicts_the_least_recently_used() {
        let cache = ContactKeys::new(2);
        for n in 1..=3 {
            let (tenant, contact) = ids(n);
            if n == 3 {
                // 1 was used since 2 was stored: 2 goes.
                cache.get(&ids(1).0, &ids(1).1).unwrap();
            }
            cache.keep(cache.epoch(), &tenant, &contact, &SecretKey::generate());
        }
        assert_eq!(cache.stats().0, 2);
        assert!(cache.get(&ids(1).0, &ids(1).1).is_ok());
        assert!(cache.get(&ids(2).0, &ids(2).1).is_err());
        assert!(cache.get(&ids(3).0, &ids(3).1).is_ok());
    }

    #[test]
    fn a_cache_of_capacity_zero_keeps_nothing() {
        let cache = ContactKeys::new(0);
        let (tenant, contact) = ids(1);
        cache.keep(cache.epoch(), &tenant, &contact, &SecretKey::generate());
        assert!(cache.get(&tenant, &contact).is_err());
        assert_eq!(cache.stats(), (0, 0, 1));
    }

    #[test]
    fn a_load_that_raced_a_shredding_is_not_kept() {
        let cache = ContactKeys::new(8);
        let (tenant, contact) = ids(1);
        let key = SecretKey::generate();
        // A load starts, reads the key store, and is overtaken by the
        // contact's erasure before it can keep what it read.
        let epoch = cache.get(&tenant, &contact).unwrap_err();
        cache.forget(&tenant, &contact);
        cache.keep(epoch, &tenant, &contact, &key);
        assert!(
            cache.get(&tenant, &contact).is_err(),
            "a shredded key came back"
        );
        // A tenant's shredding forgets every key of it, only of it.
        let other = (
            TenantId::from_slice(&[2; 16]).unwrap(),
            ContactId::from_slice(&[9; 16]).unwrap(),
        );
        cache.keep(cache.epoch(), &tenant, &contact, &key);
        cache.keep(cache.epoch(), &other.0, &other.1, &key);
        cache.forget_tenant(&tenant);
        assert!(cache.get(&tenant, &contact).is_err());
        assert!(cache.get(&other.0, &other.1).is_ok());
    }
}
