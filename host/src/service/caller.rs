//! Who asks: a tenant's API key, presented to the HTTP API or signed in to
//! the console. Every tenant action takes a [`TenantCaller`] and checks the
//! scope it needs itself, so both faces hold the same rules.

use crate::audit::{Actor, AuditDraft};
use crate::ids::TenantId;
use crate::tenancy::api_keys::{ApiKey, Scope};

use super::error::ServiceError;

/// The face a request came through; recorded in the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Face {
    /// The HTTP API (`/v1/…`).
    Api,
    /// The tenant console (`/console`).
    Console,
}

/// An authenticated tenant key. The tenant comes from here and only from
/// here: nothing a caller sends can name another tenant.
#[derive(Debug, Clone)]
pub struct TenantCaller {
    pub tenant: TenantId,
    pub key: ApiKey,
    pub face: Face,
}

impl TenantCaller {
    /// Refuse unless the key carries `scope` (admin carries every scope).
    pub fn require(&self, scope: Scope) -> Result<(), ServiceError> {
        if self.key.allows(scope) {
            Ok(())
        } else {
            Err(ServiceError::Forbidden(format!(
                "this API key lacks the `{}` scope",
                scope.name()
            )))
        }
    }

    /// Refuse unless the key carries one of `scopes`; the refusal names the
    /// first.
    pub fn require_any(&self, scopes: &[Scope]) -> Result<(), ServiceError> {
        match scopes.iter().find(|s| self.key.allows(**s)) {
            Some(_) => Ok(()),
            None => self.require(scopes[0]),
        }
    }

    /// The audit actor: the key, through the face it used.
    pub fn actor(&self) -> Actor {
        match self.face {
            Face::Api => Actor::ApiKey(self.key.id.to_string()),
            Face::Console => Actor::Console(self.key.id.to_string()),
        }
    }

    /// An audit entry by this caller about its own tenant.
    pub fn audit(&self, now: u64, action: &str, details: serde_json::Value) -> AuditDraft {
        AuditDraft::new(self.tenant, now, self.actor(), action).details(details)
    }
}
