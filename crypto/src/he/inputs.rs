//! Encrypted statistics through secure aggregation: what a participant seals at the masked-input
//! stage, how the coordinator checks and sums it, and what the auditor decrypts.
//!
//! The coordinator adds expanded ciphertexts without bootstrapping while the blocks' carry
//! space allows (the proofs guarantee every fresh block holds a 2-bit digit), propagates carries
//! only when it must, then adds the unmask correction and applies the disclosure policy.

use super::keys::{AuditorKeys, PublicMaterial, ServerMaterial};
use super::{BLOCK_BITS, HeError, check_value_bits, decode, encode};
use crate::secagg::coordinator::MaskedInputs;
use crate::secagg::encoding::Modulus;
use crate::secagg::identity::Signer;
use crate::secagg::{Context, SecAggError};
use accord_proto::v1::EncryptedStatistics;
use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
use prost::Message;
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tfhe::conformance::ParameterSetConformant;
use tfhe::integer::ciphertext::{
    CompactCiphertextList, IntegerProvenCompactCiphertextListConformanceParams,
    ProvenCompactCiphertextList,
};
use tfhe::integer::prelude::ServerKeyDefaultCMux;
use tfhe::integer::{BooleanBlock, IntegerCiphertext, RadixCiphertext};
use tfhe::zk::ZkComputeLoad;

/// The ring masks are drawn in before they are reduced modulo 2^value_bits.
pub const MASK_RING: Modulus = Modulus::Z32;

/// One participant's signed commitment to the ciphertext it submitted.
#[derive(Debug, Clone, PartialEq)]
pub struct Commitment {
    pub participant: String,
    pub certificate_der: Vec<u8>,
    pub ciphertext_sha256: [u8; 32],
    pub signature: Vec<u8>,
}

/// Checks `commitment` was signed by `key` in `context`.
pub fn verify_commitment(context: &Context, commitment: &Commitment, key: &VerifyingKey) -> bool {
    let digest = context.commitment_digest(&commitment.participant, &commitment.ciphertext_sha256);
    Signature::from_slice(&commitment.signature).is_ok_and(|s| key.verify(&digest, &s).is_ok())
}

/// Encrypts `words` (masked, in [`MASK_RING`]) modulo 2^`bits` under the auditor's public key,
/// with a proof bound to `context` and `sender`, and signs a commitment to the ciphertext:
/// the body of the fairness phase's masked-input message.
pub fn seal(
    material: &PublicMaterial,
    context: &Context,
    signer: &Signer,
    words: &[u64],
    bits: u32,
) -> Result<Vec<u8>, SecAggError> {
    let failed = |e: HeError| SecAggError::Malformed {
        from: signer.name().to_owned(),
        what: "encrypted statistics",
        reason: e.to_string(),
    };
    let list = encrypt(
        material,
        words,
        bits,
        &context.proof_metadata(signer.name()),
    )
    .map_err(failed)?;
    let digest: [u8; 32] = Sha256::digest(&list).into();
    Ok(EncryptedStatistics {
        commitment_signature: signer
            .sign_digest(&context.commitment_digest(signer.name(), &digest)),
        ciphertext_list: list,
    }
    .encode_to_vec())
}

/// Encrypts words modulo 2^`bits` as one proven compact list; `metadata` binds the proofs.
pub fn encrypt(
    material: &PublicMaterial,
    words: &[u64],
    bits: u32,
    metadata: &[u8],
) -> Result<Vec<u8>, HeError> {
    let bits = check_value_bits(bits)?;
    let blocks = (bits / BLOCK_BITS) as usize;
    let ring = (1u64 << bits) - 1;
    let mut builder = CompactCiphertextList::builder(&material.public_key);
    for &word in words {
        builder.push_with_num_blocks(word & ring, blocks);
    }
    let list = builder
        .build_with_proof_packed(&material.crs, metadata, ZkComputeLoad::Proof)
        .map_err(|e| HeError::Encryption(e.to_string()))?;
    encode("encrypted statistics", &list)
}

/// The disclosure policy the coordinator applies on ciphertexts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FairnessPolicy {
    /// Values per group; a group's first value is its size.
    pub fields: usize,
    /// Groups smaller than this have every value zeroed (and are marked suppressed).
    pub min_group_size: u64,
}

/// The coordinator's homomorphic sum of the participants' encrypted statistics.
pub struct EncryptedInputs {
    context: Context,
    material: Arc<ServerMaterial>,
    values: usize,
    bits: u32,
    policy: FairnessPolicy,
    /// Lists received and checked for form, waiting for their proofs to be verified.
    queued: Vec<(Commitment, ProvenCompactCiphertextList)>,
    /// Lists verified and expanded, by sender, waiting for the survivor set.
    opened: BTreeMap<String, (Commitment, Vec<RadixCiphertext>)>,
}

/// The aggregate the auditor receives: masks removed, policy applied, still encrypted.
pub struct EncryptedAggregate {
    pub values: Vec<RadixCiphertext>,
    /// Per group: encrypts true if the group was kept, false if suppressed.
    pub kept: Vec<BooleanBlock>,
    pub bits: u32,
    /// The contributors' commitments, by participant name.
    pub commitments: Vec<Commitment>,
}

impl EncryptedInputs {
    pub fn new(
        context: Context,
        material: Arc<ServerMaterial>,
        values: usize,
        bits: u32,
        policy: FairnessPolicy,
    ) -> Result<Self, HeError> {
        let bits = check_value_bits(bits)?;
        if policy.fields == 0 || !values.is_multiple_of(policy.fields) {
            return Err(HeError::Malformed {
                what: "fairness layout",
                reason: format!("{values} values are not whole groups of {}", policy.fields),
            });
        }
        Ok(Self {
            context,
            material,
            values,
            bits,
            policy,
            queued: Vec::new(),
            opened: BTreeMap::new(),
        })
    }

    /// Reads one participant's list and checks its form (cheap: no proof yet).
    fn read(&self, list: &[u8]) -> Result<ProvenCompactCiphertextList, String> {
        let conformance =
            IntegerProvenCompactCiphertextListConformanceParams::from_crs_and_parameters(
                super::PKE_PARAMETERS,
                &self.material.public.crs,
            );
        let list: ProvenCompactCiphertextList = decode("encrypted statistics", list)
            .map_err(|e| format!("not a proven ciphertext list: {e}"))?;
        if !list.is_conformant(&conformance) {
            return Err(
                "the list does not conform to the auditor's parameters and proof capacity".into(),
            );
        }
        if list.len() != self.values {
            return Err(format!("{} values, expected {}", list.len(), self.values));
        }
        Ok(list)
    }

    /// Verifies one list's proofs (bound to `sender`) and expands it into radix ciphertexts
    /// under the computation key.
    fn open(
        &self,
        sender: &str,
        list: &ProvenCompactCiphertextList,
    ) -> Result<Vec<RadixCiphertext>, String> {
        let public = &self.material.public;
        let blocks = (self.bits / BLOCK_BITS) as usize;
        let expanded = list
            .verify_and_expand(
                &public.crs,
                &public.public_key,
                &self.context.proof_metadata(sender),
                self.material.expansion(),
            )
            .map_err(|e| format!("the proof of well-formed encryption does not verify ({e})"))?;
        (0..self.values)
            .map(|i| {
                let value: RadixCiphertext = expanded
                    .get(i)
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("value {i} is missing"))?;
                if value.blocks().len() != blocks {
                    return Err(format!(
                        "value {i} has {} blocks, expected {blocks} ({} bits)",
                        value.blocks().len(),
                        self.bits
                    ));
                }
                Ok(value)
            })
            .collect()
    }
}

impl MaskedInputs for EncryptedInputs {
    type Sum = EncryptedAggregate;

    fn words(&self) -> usize {
        self.values
    }

    fn modulus(&self) -> Modulus {
        MASK_RING
    }

    fn add(
        &mut self,
        sender: &str,
        key: &VerifyingKey,
        certificate_der: &[u8],
        body: &[u8],
    ) -> Result<(), SecAggError> {
        let malformed = |reason: String| SecAggError::Malformed {
            from: sender.to_owned(),
            what: "encrypted statistics",
            reason,
        };
        let input = EncryptedStatistics::decode(body).map_err(|e| malformed(e.to_string()))?;
        let commitment = Commitment {
            participant: sender.to_owned(),
            certificate_der: certificate_der.to_vec(),
            ciphertext_sha256: Sha256::digest(&input.ciphertext_list).into(),
            signature: input.commitment_signature,
        };
        if !verify_commitment(&self.context, &commitment, key) {
            return Err(malformed(
                "the commitment to the ciphertext is not signed by the sender".into(),
            ));
        }
        let list = self.read(&input.ciphertext_list).map_err(malformed)?;
        self.queued.push((commitment, list));
        Ok(())
    }

    fn settle(&mut self) -> Vec<(String, SecAggError)> {
        // One list at a time: each is verified and expanded in parallel inside tfhe.
        let queued = std::mem::take(&mut self.queued);
        let mut refused = Vec::new();
        for (commitment, list) in queued {
            match self.open(&commitment.participant, &list) {
                Ok(values) => {
                    self.opened
                        .insert(commitment.participant.clone(), (commitment, values));
                }
                Err(reason) => refused.push((
                    commitment.participant.clone(),
                    SecAggError::Malformed {
                        from: commitment.participant,
                        what: "encrypted statistics",
                        reason,
                    },
                )),
            }
        }
        refused
    }

    fn finish(
        &mut self,
        contributors: &BTreeSet<String>,
        correction: Vec<u64>,
    ) -> Result<EncryptedAggregate, SecAggError> {
        let server = &self.material.server_key;
        let blocks = (self.bits / BLOCK_BITS) as usize;
        let ring = (1u64 << self.bits) - 1;
        let opened = std::mem::take(&mut self.opened);
        let mut values: Vec<RadixCiphertext> = (0..self.values)
            .map(|_| server.create_trivial_zero_radix(blocks))
            .collect();
        let mut commitments = Vec::with_capacity(contributors.len());
        // Additions without bootstrapping while the blocks' carry space allows (the proofs
        // guarantee every fresh block holds a 2-bit digit); carries propagated only when needed.
        for (sender, (commitment, list)) in opened {
            if !contributors.contains(&sender) {
                continue;
            }
            values
                .par_iter_mut()
                .zip(list.par_iter())
                .for_each(|(total, value)| {
                    if server.is_add_possible(&*total, value).is_err() {
                        server.full_propagate_parallelized(total);
                    }
                    server.unchecked_add_assign(total, value);
                });
            commitments.push(commitment);
        }
        if commitments.len() != contributors.len() {
            return Err(SecAggError::Malformed {
                from: "coordinator".into(),
                what: "survivor set",
                reason: "it names a participant whose statistics were not accepted".into(),
            });
        }
        values
            .par_iter_mut()
            .zip(correction)
            .for_each(|(total, c)| {
                if !total.block_carries_are_empty() {
                    server.full_propagate_parallelized(total);
                }
                *total = server.scalar_add_parallelized(&*total, c & ring);
            });
        let fields = self.policy.fields;
        let kept: Vec<BooleanBlock> = if self.policy.min_group_size == 0 {
            (0..self.values / fields)
                .map(|_| server.create_trivial_boolean_block(true))
                .collect()
        } else {
            let kept: Vec<BooleanBlock> = values
                .par_chunks(fields)
                .map(|group| server.scalar_ge_parallelized(&group[0], self.policy.min_group_size))
                .collect();
            let zero: RadixCiphertext = server.create_trivial_zero_radix(blocks);
            values
                .par_chunks_mut(fields)
                .zip(kept.par_iter())
                .for_each(|(group, keep)| {
                    group.par_iter_mut().for_each(|value| {
                        *value = server.if_then_else_parallelized(keep, &*value, &zero);
                    });
                });
            kept
        };
        Ok(EncryptedAggregate {
            values,
            kept,
            bits: self.bits,
            commitments,
        })
    }
}

impl EncryptedAggregate {
    /// The aggregate as an `accord.v1.EncryptedAggregate` file.
    pub fn to_bytes(&self, federation_id: &str, round: u32) -> Result<Vec<u8>, HeError> {
        Ok(accord_proto::v1::EncryptedAggregate {
            federation_id: federation_id.to_owned(),
            round,
            value_bits: self.bits,
            values: self
                .values
                .iter()
                .map(|v| encode("aggregate value", v))
                .collect::<Result<_, _>>()?,
            kept: self
                .kept
                .iter()
                .map(|k| encode("suppression flag", k))
                .collect::<Result<_, _>>()?,
        }
        .encode_to_vec())
    }
}

/// An aggregate read back by the auditor.
pub struct OpenedAggregate {
    pub federation_id: String,
    pub round: u32,
    pub values: Vec<RadixCiphertext>,
    pub kept: Vec<BooleanBlock>,
}

impl OpenedAggregate {
    /// Reads an aggregate file's bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, HeError> {
        let file = accord_proto::v1::EncryptedAggregate::decode(bytes).map_err(|e| {
            HeError::Malformed {
                what: "encrypted aggregate",
                reason: e.to_string(),
            }
        })?;
        let bits = check_value_bits(file.value_bits)?;
        let values: Vec<RadixCiphertext> = file
            .values
            .iter()
            .map(|v| decode("aggregate value", v))
            .collect::<Result<_, _>>()?;
        if let Some(i) = values.iter().position(|v| {
            v.blocks().len() != (bits / BLOCK_BITS) as usize || !v.blocks().iter().all(decryptable)
        }) {
            return Err(HeError::Malformed {
                what: "encrypted aggregate",
                reason: format!("value {i} is not {bits} bits under the auditor's parameters"),
            });
        }
        let kept: Vec<BooleanBlock> = file
            .kept
            .iter()
            .map(|k| decode("suppression flag", k))
            .collect::<Result<_, _>>()?;
        if let Some(i) = kept.iter().position(|k| !decryptable(k.as_ref())) {
            return Err(HeError::Malformed {
                what: "encrypted aggregate",
                reason: format!("flag {i} is not a block under the auditor's parameters"),
            });
        }
        Ok(Self {
            federation_id: file.federation_id,
            round: file.round,
            values,
            kept,
        })
    }
}

/// Whether a block can be decrypted with the auditor's key: tfhe's conformance check of its LWE
/// ciphertext (dimension, modulus) and its moduli and atomic pattern (tfhe's decryption asserts
/// the dimension). Degree and noise level are left out: a computed block is no longer fresh.
fn decryptable(block: &tfhe::shortint::Ciphertext) -> bool {
    let expected =
        tfhe::shortint::PBSParameters::from(super::PARAMETERS).to_shortint_conformance_param();
    block.ct.is_conformant(&expected.ct_params)
        && block.message_modulus == expected.message_modulus
        && block.carry_modulus == expected.carry_modulus
        && block.atomic_pattern == expected.atomic_pattern
}

impl AuditorKeys {
    /// Decrypts one participant's submitted list as it is (no proof check): what a curious
    /// auditor would get from a single ciphertext, which is masked noise. (`server` expands it;
    /// the auditor can make its own.)
    pub fn decrypt_submission(
        &self,
        list: &[u8],
        server: &ServerMaterial,
    ) -> Result<Vec<u64>, HeError> {
        let list: ProvenCompactCiphertextList = decode("encrypted statistics", list)?;
        let expanded = list
            .expand_without_verification(server.expansion())
            .map_err(|e| HeError::Malformed {
                what: "encrypted statistics",
                reason: e.to_string(),
            })?;
        (0..list.len())
            .map(|i| match expanded.get::<RadixCiphertext>(i) {
                Ok(Some(v)) => Ok(self.client.decrypt_radix::<u64>(&v)),
                _ => Err(HeError::Malformed {
                    what: "encrypted statistics",
                    reason: format!("value {i} does not expand"),
                }),
            })
            .collect()
    }

    /// Decrypts an aggregate: each value, and per group whether it was kept.
    pub fn decrypt(
        &self,
        values: &[RadixCiphertext],
        kept: &[BooleanBlock],
    ) -> (Vec<u64>, Vec<bool>) {
        (
            values
                .par_iter()
                .map(|v| self.client.decrypt_radix::<u64>(v))
                .collect(),
            kept.iter().map(|k| self.client.decrypt_bool(k)).collect(),
        )
    }
}
