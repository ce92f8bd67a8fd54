//! Input validity: each participant proves that its encoded, unmasked input meets its phase's
//! bounds and relations, so no participant can move a sum further than an honest one with the
//! largest allowed data could.
//!
//! The mechanism is ACORN-detect's (Bell et al., USENIX Security 2023). A participant commits
//! to each word x_j of its encoded input with a Pedersen commitment C_j = x_j·B + ρ_j·H
//! (bulletproofs' `PedersenGens::default()` on Ristretto), whose blinding ρ_j is expanded from
//! the same seeds as its masks ([`super::mask::add_blindings`]: self seed plus or minus pairwise
//! seeds). It proves with aggregated Bulletproofs range proofs (Bünz et al., S&P 2018; a few per
//! width, see [`Statement`]) that every integer affine form of its statement lies in [0, 2^n):
//! the forms are
//! derived from the C_j by both sides, so the proof speaks about the committed words. The
//! transcript (merlin) binds the caller's `binding` (federation, round, phase, sender), the
//! statement and the commitments.
//!
//! The coordinator verifies each proof on receipt ([`verify`]; a bad proof names its sender),
//! adds the commitments of the survivors ([`CommitmentSum`]) and, once it has unmasked the
//! sum S, checks S_j·B + (Σρ)_j·H = Σ C_j with Σρ rebuilt from the unmasking secrets exactly as
//! the word correction is: pairwise blindings cancel, self blindings and those towards dropped
//! neighbours are recomputed. The forms pin every committed word to an integer range, so Σ x_j
//! is an integer far below the group order and the check holds only if the ring sum did not wrap
//! and equals the sum of the proven inputs. A participant whose masked words differ from its
//! committed input makes the check fail: the phase aborts (the cheater cannot be named, but
//! cannot move the result either).
//!
//! The fairness counts, which the coordinator never sees, are committed to under the auditor's
//! key instead and checked by the auditor ([`counts`]).
//!
//! What this does not stop: a participant choosing any input within its bounds and relations
//! (the honest range of a participant with the most records allowed).

pub mod counts;
mod statement;

pub use statement::Statement;

use accord_proto::v1;
use bulletproofs::{BulletproofGens, PedersenGens, ProofError, RangeProof};
use curve25519_dalek::constants::RISTRETTO_BASEPOINT_TABLE;
use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{Identity, IsIdentity, VartimeMultiscalarMul};
use merlin::Transcript;
use rand::RngCore;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Bytes of a compressed Ristretto point.
const POINT_BYTES: usize = 32;

/// Why a statement could not be built, a proof made or accepted, or a sum checked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValidityError {
    /// A relation does not fit the vector or the encoding.
    #[error("relation {index}: {reason}")]
    BadRelation {
        /// Which relation of the statement, from 0.
        index: usize,
        /// What does not fit.
        reason: String,
    },
    /// The bounds and relations together admit no input.
    #[error("the statement admits no input: {0}")]
    Infeasible(String),
    /// A form's honest values do not fit in 64 bits.
    #[error("{form}: needs a range proof wider than 64 bits; use fewer precision bits")]
    TooWide {
        /// The form, as the statement writes it.
        form: String,
    },
    /// A vector, list or byte string of the wrong length.
    #[error("expected {expected} {what}, got {got}")]
    Length {
        /// What was counted (e.g. "commitments").
        what: &'static str,
        /// The length the statement needs.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// The prover's input breaks a form: it is out of its bounds or relations.
    #[error("the input breaks its statement: {form}")]
    Unsatisfied {
        /// The form broken, as the statement writes it.
        form: String,
    },
    /// A proof's bytes are not a range proof.
    #[error("malformed validity proof: {0}")]
    Malformed(String),
    /// A point that does not decode as a canonical Ristretto encoding.
    #[error("{what} {index} is not a canonical Ristretto point")]
    NonCanonical {
        /// What the point is (e.g. "commitment").
        what: &'static str,
        /// Its position, from 0.
        index: usize,
    },
    /// A range proof over forms of one width does not verify.
    #[error("a range proof over {bits}-bit forms does not verify")]
    Invalid {
        /// The width of the forms the proof covers.
        bits: u32,
        /// bulletproofs' error.
        #[source]
        source: ProofError,
    },
    /// The unmasked sum is not the sum of the committed inputs (or it wrapped).
    #[error("the unmasked sum differs from the sum of the committed inputs at position {index}")]
    SumMismatch {
        /// The first word position where they differ.
        index: usize,
    },
    /// bulletproofs refused to prove (never for a statement this module built).
    #[error("the range proof could not be made")]
    Proving(#[source] ProofError),
}

/// A participant's commitments to its words and the range proofs over its statement's forms.
#[derive(Debug, Clone)]
pub struct ValidityProof {
    commitments: Vec<CompressedRistretto>,
    range_proofs: Vec<RangeProof>,
}

/// A verified participant's commitments, to add to a [`CommitmentSum`].
#[derive(Debug, Clone, PartialEq)]
pub struct Commitments(Vec<RistrettoPoint>);

impl Commitments {
    /// The number of committed words.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no commitments.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The Pedersen generators of the plain phases: B the Ristretto basepoint, H its SHA3-512 hash
/// to the group (nobody knows log_B H).
fn pedersen() -> PedersenGens {
    PedersenGens::default()
}

/// Proves that `words` (the encoded, unmasked input, each below 2^64) meet `statement`,
/// committing to word j with blinding `blindings[j]` (ρ from [`super::mask::add_blindings`]).
/// `binding` goes into the transcript: the verifier must pass the same bytes.
///
/// # Errors
/// Lengths that differ from the statement's; an input that breaks a form (named).
pub fn prove(
    statement: &Statement,
    words: &[u64],
    blindings: &[Scalar],
    binding: &[u8],
) -> Result<ValidityProof, ValidityError> {
    check_len("words", statement.len(), words.len())?;
    check_len("blindings", statement.len(), blindings.len())?;
    let gens = pedersen();
    let commitments = commit(&gens, words, blindings);
    let mut transcript = transcript(b"plain", statement, binding, &[&commitments]);
    let range_proofs = prove_forms(statement, words, blindings, &gens, &mut transcript)?;
    Ok(ValidityProof {
        commitments,
        range_proofs,
    })
}

/// Verifies `proof` against `statement` and `binding`; returns the commitments to sum.
///
/// # Errors
/// A wrong number of commitments, a non-canonical point (named by index), a range proof that
/// does not verify.
pub fn verify(
    statement: &Statement,
    proof: &ValidityProof,
    binding: &[u8],
) -> Result<Commitments, ValidityError> {
    check_len("commitments", statement.len(), proof.commitments.len())?;
    let points = decompress(&proof.commitments, "commitment")?;
    let mut transcript = transcript(b"plain", statement, binding, &[&proof.commitments]);
    verify_forms(
        statement,
        &points,
        &proof.range_proofs,
        &pedersen(),
        &mut transcript,
    )?;
    Ok(Commitments(points))
}

impl ValidityProof {
    /// The wire form.
    pub fn to_message(&self) -> v1::ValidityProof {
        v1::ValidityProof {
            commitments: points_to_bytes(&self.commitments),
            range_proofs: self.range_proofs.iter().map(RangeProof::to_bytes).collect(),
        }
    }

    /// Reads the wire form for `statement`, refusing any length other than the statement's
    /// before allocating (points are decoded by [`verify`]).
    pub fn from_message(
        statement: &Statement,
        message: &v1::ValidityProof,
    ) -> Result<Self, ValidityError> {
        Ok(Self {
            commitments: points_from_bytes(&message.commitments, statement.len(), "commitment")?,
            range_proofs: range_proofs_from_bytes(statement, &message.range_proofs)?,
        })
    }
}

/// The sum of the survivors' commitments, checked against the unmasked sum.
#[derive(Debug, Clone, PartialEq)]
pub struct CommitmentSum {
    points: Vec<RistrettoPoint>,
    summands: usize,
}

impl CommitmentSum {
    /// An empty sum over vectors of `len` words.
    pub fn new(len: usize) -> Self {
        Self {
            points: vec![RistrettoPoint::identity(); len],
            summands: 0,
        }
    }

    /// Adds one participant's verified commitments.
    pub fn add(&mut self, commitments: &Commitments) -> Result<(), ValidityError> {
        check_len("commitments", self.points.len(), commitments.len())?;
        for (sum, point) in self.points.iter_mut().zip(&commitments.0) {
            *sum += point;
        }
        self.summands += 1;
        Ok(())
    }

    /// The number of commitments added.
    pub fn summands(&self) -> usize {
        self.summands
    }

    /// Checks S_j·B + σ_j·H = Σ C_j for every position j, with S the unmasked ring sum and σ
    /// the sum of the added participants' blindings: all positions at once with random weights
    /// in one multiscalar multiplication (a false pass has probability about 2^-252), then,
    /// only on failure, one by one to name the first that differs.
    pub fn check(&self, sum_words: &[u64], blinding_sum: &[Scalar]) -> Result<(), ValidityError> {
        check_len("sum words", self.points.len(), sum_words.len())?;
        check_len("blinding sums", self.points.len(), blinding_sum.len())?;
        let gens = pedersen();
        let weights = random_scalars(self.points.len());
        let words: Vec<Scalar> = sum_words.iter().map(|&s| Scalar::from(s)).collect();
        if batch_is_zero(&weights, &words, blinding_sum, &self.points, &gens) {
            return Ok(());
        }
        let index = (0..self.points.len())
            .find(|&j| gens.commit(words[j], blinding_sum[j]) != self.points[j])
            .unwrap_or(0);
        Err(ValidityError::SumMismatch { index })
    }
}

/// Whether Σ w_j·(S_j·B + σ_j·H − P_j) is the identity.
fn batch_is_zero(
    weights: &[Scalar],
    words: &[Scalar],
    blindings: &[Scalar],
    points: &[RistrettoPoint],
    gens: &PedersenGens,
) -> bool {
    let word_total: Scalar = weights.iter().zip(words).map(|(w, s)| w * s).sum();
    let blinding_total: Scalar = weights.iter().zip(blindings).map(|(w, b)| w * b).sum();
    RistrettoPoint::vartime_multiscalar_mul(
        [word_total, blinding_total]
            .into_iter()
            .chain(weights.iter().map(|w| -w)),
        [gens.B, gens.B_blinding].iter().chain(points),
    )
    .is_identity()
}

/// `n` uniform scalars from the thread's CSPRNG (64 bytes each, reduced).
fn random_scalars(n: usize) -> Vec<Scalar> {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| {
            let mut bytes = [0u8; 64];
            rng.fill_bytes(&mut bytes);
            Scalar::from_bytes_mod_order_wide(&bytes)
        })
        .collect()
}

fn check_len(what: &'static str, expected: usize, got: usize) -> Result<(), ValidityError> {
    if expected == got {
        Ok(())
    } else {
        Err(ValidityError::Length {
            what,
            expected,
            got,
        })
    }
}

/// The scalar of a signed integer.
fn scalar(v: i128) -> Scalar {
    if v >= 0 {
        Scalar::from(v.unsigned_abs())
    } else {
        -Scalar::from(v.unsigned_abs())
    }
}

/// Bulletproofs generators for `parties` values of `bits` bits, generated once per width and
/// regrown when a larger aggregation needs them (thousands of hash-to-group points).
fn generators(bits: u32, parties: usize) -> Arc<BulletproofGens> {
    static CACHE: OnceLock<Mutex<HashMap<u32, Arc<BulletproofGens>>>> = OnceLock::new();
    let mut cache = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    match cache.get(&bits) {
        Some(gens) if gens.party_capacity >= parties => gens.clone(),
        _ => {
            let gens = Arc::new(BulletproofGens::new(bits as usize, parties));
            cache.insert(bits, gens.clone());
            gens
        }
    }
}

/// The compressed commitments value·B + blinding·H, pairwise.
fn commit(gens: &PedersenGens, values: &[u64], blindings: &[Scalar]) -> Vec<CompressedRistretto> {
    values
        .iter()
        .zip(blindings)
        .map(|(&x, &rho)| gens.commit(Scalar::from(x), rho).compress())
        .collect()
}

/// The blinding of a form's commitment: Σ coefficient · blinding (the constant has none).
fn form_blinding(form: &statement::Form, blindings: &[Scalar]) -> Scalar {
    form.terms
        .iter()
        .map(|&(at, a)| scalar(a) * blindings[at])
        .sum()
}

/// The transcript of one proof: the kind of proof, the caller's binding, the statement and
/// every committed point.
fn transcript(
    kind: &'static [u8],
    statement: &Statement,
    binding: &[u8],
    points: &[&[CompressedRistretto]],
) -> Transcript {
    let mut transcript = Transcript::new(b"accord input validity v1");
    transcript.append_message(b"kind", kind);
    transcript.append_message(b"binding", binding);
    transcript.append_message(b"statement", statement.digest());
    for list in points {
        transcript.append_message(b"points", &points_to_bytes(list));
    }
    transcript
}

/// The range proofs over every form of `statement`, for committed `words` with `blindings`
/// under `gens`.
fn prove_forms(
    statement: &Statement,
    words: &[u64],
    blindings: &[Scalar],
    gens: &PedersenGens,
    transcript: &mut Transcript,
) -> Result<Vec<RangeProof>, ValidityError> {
    let mut proofs = Vec::with_capacity(statement.groups().len());
    for group in statement.groups() {
        let padded = group.padded();
        let mut values = Vec::with_capacity(padded);
        let mut form_blindings = Vec::with_capacity(padded);
        for form in &group.forms {
            let value = form
                .value(words)
                .filter(|v| (0..1i128 << group.bits).contains(v))
                .ok_or_else(|| ValidityError::Unsatisfied {
                    form: statement.describe(form),
                })?;
            // In [0, 2^bits) with bits <= 64.
            values.push(value as u64);
            form_blindings.push(form_blinding(form, blindings));
        }
        values.resize(padded, 0);
        form_blindings.resize(padded, Scalar::ZERO);
        let (proof, _) = RangeProof::prove_multiple(
            &generators(group.bits, padded),
            gens,
            transcript,
            &values,
            &form_blindings,
            group.bits as usize,
        )
        .map_err(ValidityError::Proving)?;
        proofs.push(proof);
    }
    Ok(proofs)
}

/// Verifies the range proofs over every form of `statement`, deriving each form's commitment
/// from the committed `points` (B the basepoint, as in both kinds of proof).
fn verify_forms(
    statement: &Statement,
    points: &[RistrettoPoint],
    proofs: &[RangeProof],
    gens: &PedersenGens,
    transcript: &mut Transcript,
) -> Result<(), ValidityError> {
    check_len("range proofs", statement.groups().len(), proofs.len())?;
    let mut multiples: HashMap<(usize, i128), RistrettoPoint> = HashMap::new();
    for (group, proof) in statement.groups().iter().zip(proofs) {
        let padded = group.padded();
        let mut derived = Vec::with_capacity(padded);
        for form in &group.forms {
            let mut point = &scalar(form.constant) * RISTRETTO_BASEPOINT_TABLE;
            for &(at, a) in &form.terms {
                let base = points[at];
                match a {
                    1 => point += base,
                    -1 => point -= base,
                    _ => point += *multiples.entry((at, a)).or_insert_with(|| base * scalar(a)),
                }
            }
            derived.push(point.compress());
        }
        derived.resize(padded, RistrettoPoint::identity().compress());
        proof
            .verify_multiple(
                &generators(group.bits, padded),
                gens,
                transcript,
                &derived,
                group.bits as usize,
            )
            .map_err(|source| ValidityError::Invalid {
                bits: group.bits,
                source,
            })?;
    }
    Ok(())
}

fn points_to_bytes(points: &[CompressedRistretto]) -> Vec<u8> {
    points.iter().flat_map(|p| p.to_bytes()).collect()
}

/// Exactly `len` 32-byte points from `bytes`; the length is checked before allocating.
fn points_from_bytes(
    bytes: &[u8],
    len: usize,
    what: &'static str,
) -> Result<Vec<CompressedRistretto>, ValidityError> {
    let expected = len.saturating_mul(POINT_BYTES);
    if bytes.len() != expected {
        return Err(ValidityError::Length {
            what: "bytes of points",
            expected,
            got: bytes.len(),
        });
    }
    bytes
        .chunks_exact(POINT_BYTES)
        .map(CompressedRistretto::from_slice)
        .collect::<Result<_, _>>()
        .map_err(|_| ValidityError::Malformed(format!("a {what} is not 32 bytes")))
}

/// Decodes every point, refusing a non-canonical encoding by index.
fn decompress(
    points: &[CompressedRistretto],
    what: &'static str,
) -> Result<Vec<RistrettoPoint>, ValidityError> {
    points
        .iter()
        .enumerate()
        .map(|(index, p)| {
            p.decompress()
                .ok_or(ValidityError::NonCanonical { what, index })
        })
        .collect()
}

/// One range proof per proof of `statement`, each of exactly its length.
fn range_proofs_from_bytes(
    statement: &Statement,
    proofs: &[Vec<u8>],
) -> Result<Vec<RangeProof>, ValidityError> {
    check_len("range proofs", statement.groups().len(), proofs.len())?;
    statement
        .groups()
        .iter()
        .zip(proofs)
        .map(|(group, bytes)| {
            check_len("range proof bytes", group.proof_bytes(), bytes.len())?;
            RangeProof::from_bytes(bytes).map_err(|e| {
                ValidityError::Malformed(format!("the {}-bit range proof: {e}", group.bits))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secagg::encoding::{FixedPoint, Modulus, Segment};
    use accord_proto::layout::Relation;

    /// A model of 3 weights within ±50 per record and a count of at most 1000 records.
    fn statement() -> (FixedPoint, Statement) {
        let segment = |name: &str, len, bound, integer| Segment {
            name: name.into(),
            len,
            bound,
            integer,
        };
        let encoding = FixedPoint::new(
            Modulus::Z64,
            vec![
                segment("weighted weights", 3, 50_000.0, false),
                segment("samples", 1, 1000.0, true),
            ],
            24,
            3,
        )
        .unwrap();
        let relations = [
            Relation::scaled(0..3, 3, -50.0, 50.0),
            Relation::non_negative(3..4),
        ];
        let statement = Statement::new(&encoding, &relations).unwrap();
        (encoding, statement)
    }

    /// A prover that skips the check of its forms: a form out of range goes into the range
    /// proof as its value modulo 2^bits, the only value the proof accepts.
    fn forge(statement: &Statement, words: &[u64], blindings: &[Scalar]) -> ValidityProof {
        let gens = pedersen();
        let commitments = commit(&gens, words, blindings);
        let mut transcript = transcript(b"plain", statement, b"", &[&commitments]);
        let range_proofs = statement
            .groups()
            .iter()
            .map(|group| {
                let padded = group.padded();
                let mut values: Vec<u64> = group
                    .forms
                    .iter()
                    .map(|f| f.value(words).unwrap().rem_euclid(1 << group.bits) as u64)
                    .collect();
                let mut form_blindings: Vec<Scalar> = group
                    .forms
                    .iter()
                    .map(|f| form_blinding(f, blindings))
                    .collect();
                values.resize(padded, 0);
                form_blindings.resize(padded, Scalar::ZERO);
                RangeProof::prove_multiple(
                    &generators(group.bits, padded),
                    &gens,
                    &mut transcript,
                    &values,
                    &form_blindings,
                    group.bits as usize,
                )
                .unwrap()
                .0
            })
            .collect();
        ValidityProof {
            commitments,
            range_proofs,
        }
    }

    #[test]
    fn a_forged_proof_of_an_input_past_its_bounds_does_not_verify() {
        let (encoding, statement) = statement();
        let rho = random_scalars(4);
        let honest = encoding.encode(&[500.0, -50.0, 0.0, 10.0]).unwrap().words;
        verify(&statement, &forge(&statement, &honest, &rho), b"").unwrap();
        let cheats = [
            // The poisoning input: n = 1 with n·w far beyond clip·n.
            encoding.encode(&[50_000.0, 0.0, 0.0, 1.0]).unwrap().words,
            // One unit of 2^-24 beyond 50·n.
            {
                let mut w = encoding.encode(&[500.0, 0.0, 0.0, 10.0]).unwrap().words;
                w[0] += 1;
                w
            },
            // A negative count.
            encoding.encode(&[0.0, 0.0, 0.0, -1.0]).unwrap().words,
            // A word beyond the ring's segment range.
            {
                let mut w = honest.clone();
                w[1] = u64::MAX;
                w
            },
        ];
        for words in cheats {
            assert!(matches!(
                prove(&statement, &words, &rho, b""),
                Err(ValidityError::Unsatisfied { .. })
            ));
            assert!(matches!(
                verify(&statement, &forge(&statement, &words, &rho), b""),
                Err(ValidityError::Invalid { .. })
            ));
        }
    }

    #[test]
    fn the_forms_of_a_fit_statement_replace_the_implied_bounds() {
        let (_, statement) = statement();
        // The count's two bounds, two relation forms per weight; the weights' own bounds are
        // implied (|q| ≤ 50·2^24·1000 = B).
        assert_eq!(statement.forms(), 2 + 2 * 3);
        assert_eq!(statement.proof_widths(), vec![(32, 2), (64, 4), (64, 2)]);
    }
}
