//! Encrypted statistics through secure aggregation: what a participant seals at the masked-input
//! stage, how the coordinator checks and sums it, and what the auditor decrypts.
//!
//! The coordinator adds expanded ciphertexts without bootstrapping while the blocks' carry
//! space allows (the proofs guarantee every fresh block holds a 2-bit digit), propagates carries
//! only when it must, then adds the unmask correction and applies the disclosure policy.
//!
//! The result is a deterministic function of the inputs, their order and the thread count the
//! computation runs with: tfhe's bootstraps draw no randomness and its FFT algorithm is fixed
//! (`super::fix_fft_plan`), but tfhe chooses between its sequential and parallel carry
//! propagation by `rayon::current_num_threads()`, and the two give different (equally correct)
//! ciphertexts. So the computation runs in a pool of a stated size, which the coordinator
//! records, and a replay with the same inputs, order and size reproduces the aggregate byte for
//! byte (`accord audit verify --recompute`).

use super::keys::{AuditorKeys, PublicMaterial, ServerMaterial};
use super::{BLOCK_BITS, HeError, check_value_bits, decode, encode};
use crate::secagg::validity::Statement;
use crate::secagg::validity::counts::{
    CountCommitments, CountProof, CountSum, prove_counts, verify_counts,
};
use crate::secagg::{Context, SecAggError};
use crate::secagg::{Correction, MaskedInputs, Modulus, SealInput};
use accord_proto::v1::EncryptedStatistics;
use curve25519_dalek::scalar::Scalar;
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
    /// The participant, by the name in its certificate.
    pub participant: String,
    /// Its certificate (DER), to check the signature against the consortium CA.
    pub certificate_der: Vec<u8>,
    /// SHA-256 of the proven ciphertext list it submitted.
    pub ciphertext_sha256: [u8; 32],
    /// Its Ed25519 signature over the commitment, bound to federation, round and phase.
    pub signature: Vec<u8>,
}

/// Checks `commitment` was signed by `key` in `context`.
pub fn verify_commitment(context: &Context, commitment: &Commitment, key: &VerifyingKey) -> bool {
    let digest = context.commitment_digest(&commitment.participant, &commitment.ciphertext_sha256);
    Signature::from_slice(&commitment.signature).is_ok_and(|s| key.verify(&digest, &s).is_ok())
}

/// Encrypts the masked words of `sealed` (in [`MASK_RING`]) modulo 2^`bits` under the auditor's
/// public key, with a proof bound to `context` and the sender, signs a commitment to the
/// ciphertext, and (with a `statement`) commits to the unmasked counts under the auditor's
/// count key with range proofs that they meet it ([`crate::secagg::validity::counts`]): the
/// body of the fairness phase's masked-input message.
pub fn seal(
    material: &PublicMaterial,
    context: &Context,
    sealed: SealInput<'_>,
    bits: u32,
    statement: Option<&Statement>,
) -> Result<Vec<u8>, SecAggError> {
    let signer = sealed.signer;
    let failed = |e: HeError| SecAggError::Malformed {
        from: signer.name().to_owned(),
        what: "encrypted statistics",
        reason: e.to_string(),
    };
    let validity = statement
        .map(|statement| {
            let blindings = sealed.seeds.blindings(sealed.unmasked.len());
            prove_counts(
                statement,
                sealed.unmasked,
                &blindings,
                &material.count_key,
                &context.validity_binding(signer.name()),
            )
        })
        .transpose()?
        .map(|proof| proof.to_message());
    let list = encrypt(
        material,
        sealed.masked,
        bits,
        &context.proof_metadata(signer.name()),
    )
    .map_err(failed)?;
    let digest: [u8; 32] = Sha256::digest(&list).into();
    Ok(EncryptedStatistics {
        commitment_signature: signer
            .sign_digest(&context.commitment_digest(signer.name(), &digest)),
        ciphertext_list: list,
        validity,
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
    /// Where every homomorphic operation runs (its size picks tfhe's algorithms).
    pool: Arc<rayon::ThreadPool>,
    /// When counts must be proven: the statement every participant's counts meet.
    statement: Option<Statement>,
    /// Lists received and checked for form, waiting for their proofs to be verified.
    queued: Vec<Queued>,
    /// Lists verified and expanded, by sender, waiting for the survivor set.
    opened: BTreeMap<String, Opened>,
}

/// A list checked for form, with its count proof when counts are proven.
type Queued = (Commitment, ProvenCompactCiphertextList, Option<CountProof>);

/// A verified, expanded list, with its verified count commitments when counts are proven.
type Opened = (Commitment, Vec<RadixCiphertext>, Option<CountCommitments>);

/// The aggregate the auditor receives: masks removed, policy applied, still encrypted.
pub struct EncryptedAggregate {
    /// The summed counts in the layout's order, each an encrypted `bits`-bit integer (zero
    /// where the group was suppressed).
    pub values: Vec<RadixCiphertext>,
    /// Per group: encrypts true if the group was kept, false if suppressed.
    pub kept: Vec<BooleanBlock>,
    /// The width of each value: counts are summed modulo 2^bits.
    pub bits: u32,
    /// The contributors' commitments, by participant name.
    pub commitments: Vec<Commitment>,
    /// When counts were proven: the sum of the contributors' count commitments and of their
    /// blindings, for the auditor to check what it decrypts against ([`CountSum::open`]).
    pub proven: Option<(CountSum, Vec<Scalar>)>,
}

/// The most threads a computation may state it ran with (a replay starts that many).
pub const MAX_THREADS: usize = 1024;

/// The thread count to compute on by default: the size of rayon's global pool.
pub fn default_threads() -> usize {
    rayon::current_num_threads()
}

impl EncryptedInputs {
    /// The coordinator's sum of `values` counts per participant, each modulo 2^`bits`, with the
    /// disclosure `policy`, computed on `threads` threads (1 to [`MAX_THREADS`]; the same count
    /// gives the same bytes, see the module docs).
    pub fn new(
        context: Context,
        material: Arc<ServerMaterial>,
        values: usize,
        bits: u32,
        policy: FairnessPolicy,
        threads: usize,
    ) -> Result<Self, HeError> {
        let bits = check_value_bits(bits)?;
        if !(1..=MAX_THREADS).contains(&threads) {
            return Err(HeError::Threads {
                threads,
                reason: format!("between 1 and {MAX_THREADS} are allowed"),
            });
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("accord-he-{i}"))
            .build()
            .map_err(|e| HeError::Threads {
                threads,
                reason: e.to_string(),
            })?;
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
            pool: Arc::new(pool),
            statement: None,
            queued: Vec::new(),
            opened: BTreeMap::new(),
        })
    }

    /// Requires each participant's counts to be proven to meet `statement` (in [0, max_rows],
    /// with the fairness layout's relations), under the auditor's count key.
    pub fn proven(mut self, statement: Statement) -> Self {
        self.statement = Some(statement);
        self
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
        let proof = match &self.statement {
            Some(statement) => {
                let message = input
                    .validity
                    .as_ref()
                    .ok_or_else(|| malformed("no proof of its counts".into()))?;
                Some(
                    CountProof::from_message(statement, message)
                        .map_err(|e| malformed(e.to_string()))?,
                )
            }
            None => None,
        };
        self.queued.push((commitment, list, proof));
        Ok(())
    }

    fn settle(&mut self) -> Vec<(String, SecAggError)> {
        let pool = self.pool.clone();
        pool.install(|| self.verify_and_expand())
    }

    fn blinded(&self) -> bool {
        self.statement.is_some()
    }

    fn finish(
        &mut self,
        contributors: &BTreeSet<String>,
        correction: Correction,
    ) -> Result<EncryptedAggregate, SecAggError> {
        let pool = self.pool.clone();
        let (mut aggregate, proven_by) =
            pool.install(|| self.unmask_and_suppress(contributors, correction.words))?;
        if self.statement.is_some() {
            let mut sum = CountSum::new(self.values);
            for pairs in &proven_by {
                sum.add(pairs)?;
            }
            aggregate.proven = Some((sum, correction.blindings.unwrap_or_default()));
        }
        Ok(aggregate)
    }
}

impl EncryptedInputs {
    /// Verifies the queued lists' proofs and expands them, one list at a time (each in
    /// parallel inside tfhe); returns the senders refused.
    fn verify_and_expand(&mut self) -> Vec<(String, SecAggError)> {
        let queued = std::mem::take(&mut self.queued);
        let mut refused = Vec::new();
        for (commitment, list, proof) in queued {
            let counts = match (&self.statement, proof) {
                (Some(statement), Some(proof)) => verify_counts(
                    statement,
                    &proof,
                    &self.material.public.count_key,
                    &self.context.validity_binding(&commitment.participant),
                )
                .map(Some)
                .map_err(|e| format!("the proof of its counts does not verify ({e})")),
                _ => Ok(None),
            };
            let opened = counts.and_then(|counts| {
                self.open(&commitment.participant, &list)
                    .map(|values| (values, counts))
            });
            match opened {
                Ok((values, counts)) => {
                    self.opened
                        .insert(commitment.participant.clone(), (commitment, values, counts));
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

    /// Sums the `contributors`' lists (in name order), adds the unmask `correction` and zeroes
    /// the groups under the policy's minimum size; also returns the contributors' verified
    /// count commitments (when counts are proven).
    fn unmask_and_suppress(
        &mut self,
        contributors: &BTreeSet<String>,
        correction: Vec<u64>,
    ) -> Result<(EncryptedAggregate, Vec<CountCommitments>), SecAggError> {
        let server = &self.material.server_key;
        let blocks = (self.bits / BLOCK_BITS) as usize;
        let ring = (1u64 << self.bits) - 1;
        let opened = std::mem::take(&mut self.opened);
        let mut values: Vec<RadixCiphertext> = (0..self.values)
            .map(|_| server.create_trivial_zero_radix(blocks))
            .collect();
        let mut commitments = Vec::with_capacity(contributors.len());
        let mut proven_by = Vec::new();
        // Additions without bootstrapping while the blocks' carry space allows (the proofs
        // guarantee every fresh block holds a 2-bit digit); carries propagated only when needed.
        for (sender, (commitment, list, counts)) in opened {
            if !contributors.contains(&sender) {
                continue;
            }
            proven_by.extend(counts);
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
        Ok((
            EncryptedAggregate {
                values,
                kept,
                bits: self.bits,
                commitments,
                proven: None,
            },
            proven_by,
        ))
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
            count_commitments: self.proven.as_ref().map(|(sum, _)| sum.to_message()),
            blinding_sum: self
                .proven
                .as_ref()
                .map(|(_, blindings)| blindings.iter().flat_map(|b| b.to_bytes()).collect())
                .unwrap_or_default(),
        }
        .encode_to_vec())
    }
}

/// An aggregate read back by the auditor.
pub struct OpenedAggregate {
    /// The federation the aggregate belongs to, as the file states it.
    pub federation_id: String,
    /// The round whose fairness phase produced it.
    pub round: u32,
    /// The summed counts, as in [`EncryptedAggregate::values`].
    pub values: Vec<RadixCiphertext>,
    /// Per group: encrypts true if the group was kept, false if suppressed.
    pub kept: Vec<BooleanBlock>,
    /// When counts were proven: the commitment sums and blinding sums to open the disclosed
    /// counts against ([`CountSum::open`]).
    pub proven: Option<(CountSum, Vec<Scalar>)>,
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
        let malformed = |reason: String| HeError::Malformed {
            what: "encrypted aggregate",
            reason,
        };
        let proven = match &file.count_commitments {
            None => None,
            Some(message) => {
                let len = values.len();
                let sum =
                    CountSum::from_message(len, message).map_err(|e| malformed(e.to_string()))?;
                if file.blinding_sum.len() != 32 * len {
                    return Err(malformed(format!(
                        "{} bytes of blinding sums, expected {}",
                        file.blinding_sum.len(),
                        32 * len
                    )));
                }
                let blindings = file
                    .blinding_sum
                    .chunks_exact(32)
                    .enumerate()
                    .map(|(i, chunk)| {
                        let bytes: [u8; 32] = chunk.try_into().unwrap_or([0; 32]);
                        Option::<Scalar>::from(Scalar::from_canonical_bytes(bytes))
                            .ok_or_else(|| malformed(format!("blinding sum {i} is not canonical")))
                    })
                    .collect::<Result<_, _>>()?;
                Some((sum, blindings))
            }
        };
        Ok(Self {
            federation_id: file.federation_id,
            round: file.round,
            values,
            kept,
            proven,
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
