//! Tenant offboarding: export everything a tenant has, then delete it.
//!
//! The export is NDJSON: one JSON object per line, each with a `type`
//! (`tenant`, `installation`, `channel`, `api-key`, `contact`, `audit`), so
//! it streams and can be read line by line. Deletion shreds the tenant key
//! (every record of the tenant, in every copy, becomes unreadable) and
//! purges its records and routing entries. The operator schedules deletion
//! (at most 30 days, the promise) or deletes at once.

use std::io::Write;

use serde_json::json;

use super::dsr::Dsr;
use crate::audit::{self, Actor, AuditFilter};
use crate::data::contacts::Contacts;
use crate::data::{DataError, Vault};
use crate::ids::{ContactId, TenantId};
use crate::store::{Batch, Kind};
use crate::tenancy::api_keys;
use crate::tenancy::channels::Channel;
use crate::tenancy::installations::Installation;
use crate::tenancy::tenant::Tenant;

/// The longest a tenant's data is kept after offboarding is requested.
pub const DELETION_DAYS: u64 = 30;

/// Counts of what an export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ExportSummary {
    pub lines: u64,
    pub contacts: u64,
    pub audit_entries: u64,
}

fn line(
    out: &mut dyn Write,
    value: serde_json::Value,
    summary: &mut ExportSummary,
) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, &value)?;
    out.write_all(b"\n")?;
    summary.lines += 1;
    Ok(())
}

/// Errors of an export.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("tenant {0} does not exist")]
    UnknownTenant(TenantId),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("writing the export: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Dsr(#[from] crate::compliance::dsr::DsrError),
}

/// Write a tenant's export as NDJSON.
pub fn export(
    vault: &Vault,
    tenant: &TenantId,
    now: u64,
    out: &mut dyn Write,
) -> Result<ExportSummary, ExportError> {
    let profile = Tenant::load(vault, tenant)?.ok_or(ExportError::UnknownTenant(*tenant))?;
    let mut summary = ExportSummary::default();
    line(
        out,
        json!({"type": "tenant", "schema": "flowgate.tenant-export/1", "exported_at": now, "tenant": profile}),
        &mut summary,
    )?;
    for installation in Installation::list(vault, tenant)? {
        line(
            out,
            json!({"type": "installation", "installation": installation}),
            &mut summary,
        )?;
    }
    for channel in Channel::list(vault, tenant)? {
        line(
            out,
            json!({"type": "channel", "channel": channel.summary()}),
            &mut summary,
        )?;
    }
    for key in api_keys::list(vault, tenant)? {
        line(
            out,
            json!({"type": "api-key", "key": key.public()}),
            &mut summary,
        )?;
    }
    let contacts = Contacts::of(vault, *tenant)?;
    let dsr = Dsr {
        vault,
        tenant: *tenant,
        actor: Actor::Operator,
        now,
    };
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = vault
            .store
            .scan(tenant, Kind::Contacts, b"", after.as_deref(), 256)?;
        if page.is_empty() {
            break;
        }
        for (key, _) in &page {
            let Some(id) = ContactId::from_slice(key) else {
                continue;
            };
            if let Some(loaded) = contacts.load(&id)? {
                let export = dsr.export(&loaded)?;
                line(
                    out,
                    json!({"type": "contact", "contact": export}),
                    &mut summary,
                )?;
                summary.contacts += 1;
            }
        }
        after = page.last().map(|(k, _)| k.clone());
    }
    let mut filter = AuditFilter {
        limit: Some(1000),
        ..AuditFilter::default()
    };
    loop {
        let entries = audit::query(vault, tenant, &filter)?;
        let Some(last) = entries.last().map(|e| e.seq) else {
            break;
        };
        for entry in entries {
            line(out, json!({"type": "audit", "entry": entry}), &mut summary)?;
            summary.audit_entries += 1;
        }
        filter.after = Some(last);
    }
    out.flush()?;
    Ok(summary)
}

/// What deletion removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct DeletionSummary {
    pub records: u64,
    pub routing_entries: u64,
    pub contact_keys: u64,
}

/// Delete a tenant now: shred its keys first (from that moment nothing of
/// it can be read anywhere), then purge its records and the system
/// entries that route to it.
pub fn delete(vault: &Vault, tenant: &TenantId) -> Result<DeletionSummary, DataError> {
    if *tenant == TenantId::SYSTEM {
        return Err(DataError::Decode {
            kind: "tenants",
            reason: "the system tenant cannot be deleted".into(),
        });
    }
    let contact_keys = vault.keys.shred_tenant(tenant)?;
    let records = vault.store.purge_tenant(tenant)?;
    let mut batch = Batch::new();
    let mut routing = 0;
    batch.delete(TenantId::SYSTEM, Kind::Tenants, tenant.as_bytes().to_vec());
    routing += 1;
    for kind in [Kind::Channels, Kind::ApiKeys] {
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = vault
                .store
                .scan(&TenantId::SYSTEM, kind, b"", after.as_deref(), 1024)?;
            if page.is_empty() {
                break;
            }
            for (key, value) in &page {
                if value.get(..16) == Some(tenant.as_bytes().as_slice()) {
                    batch.delete(TenantId::SYSTEM, kind, key.clone());
                    routing += 1;
                }
            }
            after = page.last().map(|(k, _)| k.clone());
        }
    }
    // Inbox keys: shard ‖ seq ‖ tenant; outbox keys: seq ‖ tenant ‖ contact.
    for (kind, range) in [(Kind::Inbox, 9..25), (Kind::Outbox, 8..24)] {
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = vault
                .store
                .scan(&TenantId::SYSTEM, kind, b"", after.as_deref(), 1024)?;
            if page.is_empty() {
                break;
            }
            for (key, _) in &page {
                if key.get(range.clone()) == Some(tenant.as_bytes().as_slice()) {
                    batch.delete(TenantId::SYSTEM, kind, key.clone());
                    routing += 1;
                }
            }
            after = page.last().map(|(k, _)| k.clone());
        }
    }
    vault.store.commit(&batch)?;
    vault.store.flush()?;
    Ok(DeletionSummary {
        records,
        routing_entries: routing,
        contact_keys,
    })
}

/// Tenants whose scheduled deletion is due at `now`.
pub fn due_for_deletion(vault: &Vault, now: u64) -> Result<Vec<TenantId>, DataError> {
    let mut due = Vec::new();
    for id in Tenant::list_ids(vault)? {
        if let Some(tenant) = Tenant::load(vault, &id)?
            && tenant.deletion_due.is_some_and(|at| at <= now)
        {
            due.push(id);
        }
    }
    Ok(due)
}
