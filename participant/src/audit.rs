//! The participant's trust in the fairness audit: before any data is read it checks its own
//! auditor configuration against the federation's (the same pinned auditor key, a bundle that
//! key signed, the bundle the coordinator verifies with) and prepares what it encrypts its
//! per-group counts under. A participant without a `[fairness]` section, or whose
//! `[requirements] min_group_size` the federation's is below, sits the audit out.

use crate::config::ParticipantConfig;
use accord_crypto::he::keys::parse_verifying_key;
use accord_crypto::he::{HeError, PublicMaterial, check_value_bits};
use accord_crypto::secagg::validity::{Statement, ValidityError};
use accord_proto::fairness::{FairnessLayout, FairnessLayoutError};
use accord_proto::scheme::InputValidity;
use accord_proto::v1::{FederationDefinition, Schema};
use std::path::PathBuf;
use std::sync::Arc;
use tracing::warn;

/// Why this participant cannot take part in the federation's fairness audit as configured.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The auditor key, the auditor bundle or `value_bits` is not usable.
    #[error("fairness audit: {0}")]
    Keys(#[from] HeError),
    /// The federation names another auditor than the one this participant pins.
    #[error(
        "fairness audit: the federation names auditor key {named}, this participant trusts {trusted}"
    )]
    OtherAuditor {
        /// The key in the federation definition (hex).
        named: String,
        /// The key in participant.toml's `[fairness]` (hex).
        trusted: String,
    },
    /// This participant's bundle is not the one the federation names.
    #[error("fairness audit: {} (SHA-256 {got}) is not the bundle the federation names ({named})", path.display())]
    OtherBundle {
        /// participant.toml's `auditor_bundle`.
        path: PathBuf,
        /// Its SHA-256.
        got: String,
        /// The SHA-256 the federation definition names.
        named: String,
    },
    /// The schema and the federation's bins give no fairness layout.
    #[error("fairness audit: {0}")]
    Layout(#[from] FairnessLayoutError),
    /// The counts' validity statement cannot be formed.
    #[error("fairness audit: {0}")]
    Statement(#[from] ValidityError),
}

/// What a participant needs for the encrypted fairness audit: the auditor's public key and
/// proof parameters (checked against the pinned auditor key) and the groups to count.
pub(crate) struct AuditorTrust {
    pub(crate) material: Arc<PublicMaterial>,
    pub(crate) layout: FairnessLayout,
    pub(crate) value_bits: u32,
    /// When the federation requires input validity: what this participant's counts are proven
    /// to meet.
    pub(crate) statement: Option<Statement>,
}

/// Checks the participant's auditor configuration against the federation's: the same pinned
/// auditor key, a bundle it signed, and the same bundle the coordinator verifies with. None
/// when this participant sits the audit out (logged).
pub(crate) fn auditor_trust(
    config: &ParticipantConfig,
    federation: &FederationDefinition,
    schema: &Schema,
) -> Result<Option<AuditorTrust>, AuditError> {
    let local_floor = config.requirements.min_group_size;
    let Some(params) = &federation.fairness else {
        return Ok(None);
    };
    let Some(local) = &config.fairness else {
        warn!(
            "the federation audits fairness under an auditor's key, but this participant has no [fairness] section: it will sit the audit out"
        );
        return Ok(None);
    };
    if params.min_group_size < local_floor {
        warn!(
            min_group_size = params.min_group_size,
            required = local_floor,
            "the federation suppresses only groups smaller than its min_group_size, below this participant's [requirements] min_group_size: it will sit the audit out"
        );
        return Ok(None);
    }
    let pinned = parse_verifying_key(&local.auditor_verifying_key)?;
    if hex::encode(pinned.to_bytes()) != params.auditor_verifying_key.trim() {
        return Err(AuditError::OtherAuditor {
            named: params.auditor_verifying_key.clone(),
            trusted: local.auditor_verifying_key.clone(),
        });
    }
    let material = PublicMaterial::load(&local.auditor_bundle, &pinned)?;
    if material.bundle_sha256 != params.auditor_bundle_sha256 {
        return Err(AuditError::OtherBundle {
            path: local.auditor_bundle.clone(),
            got: material.bundle_sha256,
            named: params.auditor_bundle_sha256.clone(),
        });
    }
    let layout = FairnessLayout::new(schema, params.histogram_bins as usize)?;
    let secagg = federation.secure_aggregation.clone().unwrap_or_default();
    let statement = (secagg.input_validity == InputValidity::RangeProofs.name())
        .then(|| {
            Statement::counts(
                layout.len(),
                secagg.max_rows_per_participant,
                &layout.relations(),
            )
        })
        .transpose()?;
    Ok(Some(AuditorTrust {
        material: Arc::new(material),
        statement,
        layout,
        value_bits: check_value_bits(params.value_bits)?,
    }))
}
